'use strict';

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`missing required setting ${name}`);
  }
  return value;
}

module.exports = {
  port: Number(process.env.PORT || 3000),
  databaseUrl: required('DATABASE_URL'),
  // Signing secret of the payments provider's webhook endpoint.
  paymentsWebhookSecret: 'whsec_5f0c9a3e7b1d4f62a8c0e9b7d3f1a6c4',
};
