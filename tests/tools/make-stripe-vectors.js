// Writes tests/Coordinator.Tests/Billing/stripe-webhook-vectors.json: Stripe-Signature headers made by Stripe's
// official library (stripe.webhooks.generateTestHeaderString), so our verifier is checked against Stripe's own signing.
// Run from tests/tools after `npm ci`:  node make-stripe-vectors.js
const fs = require('fs');
const path = require('path');
const Stripe = require('stripe');
const stripe = new Stripe('sk_test_vectors');

const secret = 'whsec_test_coordinator_vectors_0123456789';
const timestamp = 1767225600; // 2026-01-01T00:00:00Z
const events = [
  { id: 'evt_vector_checkout', object: 'event', type: 'checkout.session.completed',
    data: { object: { id: 'cs_test_vector', object: 'checkout.session', mode: 'subscription', client_reference_id: '42',
      customer: 'cus_vector', subscription: 'sub_vector', metadata: { account_id: '42' } } } },
  { id: 'evt_vector_subscription', object: 'event', type: 'customer.subscription.updated',
    data: { object: { id: 'sub_vector', object: 'subscription', customer: 'cus_vector', status: 'active',
      default_payment_method: 'pm_vector', metadata: { account_id: '42' },
      items: { object: 'list', data: [{ id: 'si_vector', object: 'subscription_item', price: { id: 'price_vector', object: 'price' } }] } } } },
];
const vectors = events.map((event) => {
  // Stripe signs the raw body; keep the exact text (with spacing) that was signed.
  const payload = JSON.stringify(event, null, 2);
  const header = stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp });
  return { description: event.type, secret, timestamp, payload, header };
});
const out = path.join(__dirname, '..', 'Coordinator.Tests', 'Billing', 'stripe-webhook-vectors.json');
fs.writeFileSync(out, JSON.stringify({ generator: `stripe-node ${JSON.parse(fs.readFileSync(path.join(__dirname, 'node_modules', 'stripe', 'package.json'), 'utf8')).version} webhooks.generateTestHeaderString`, vectors }, null, 2) + '\n');
console.log(`wrote ${vectors.length} vectors to ${out}`);
