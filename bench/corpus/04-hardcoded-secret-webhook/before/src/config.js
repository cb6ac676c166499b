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
};
