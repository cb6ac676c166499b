'use strict';

const crypto = require('crypto');
const config = require('./config');

function verifySignature(rawBody, header) {
  const expected = crypto
    .createHmac('sha256', config.paymentsWebhookSecret)
    .update(rawBody)
    .digest('hex');
  const given = Buffer.from(header || '', 'hex');
  const wanted = Buffer.from(expected, 'hex');
  return given.length === wanted.length && crypto.timingSafeEqual(given, wanted);
}

function handlePaymentEvent(req, res) {
  if (!verifySignature(req.rawBody, req.get('Payments-Signature'))) {
    res.status(401).end();
    return;
  }
  let event;
  try {
    event = JSON.parse(req.rawBody);
  } catch (err) {
    res.status(400).end();
    return;
  }
  req.app.locals.queue.push(event);
  res.status(204).end();
}

module.exports = { handlePaymentEvent, verifySignature };
