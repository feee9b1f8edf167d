'use strict'
// BOLT11 vectors from the npm bolt11 package, for the C# decoder's tests (tests/Coordinator.Tests/Lightning/Bolt11).
//   node bolt11-vectors.js sign COUNT   signs COUNT random invoices with random keys; prints a JSON array of
//                                       {input, decoded}: what was asked, and what bolt11 decodes from the invoice.
//   node bolt11-vectors.js decode       reads a JSON array of invoices on stdin; prints a JSON array of
//                                       {ok: true, decoded} or {ok: false, error} (bolt11 checks the signature).
const crypto = require('crypto')
const bolt11 = require('bolt11')
const secp256k1 = require('secp256k1')

// bolt11 knows bc, tb, bcrt and sb; signet (tbs) is passed as a network of its own.
const NETWORKS = {
  bc: { bech32: 'bc', pubKeyHash: 0x00, scriptHash: 0x05, validWitnessVersions: [0, 1] },
  tb: { bech32: 'tb', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] },
  tbs: { bech32: 'tbs', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] },
  bcrt: { bech32: 'bcrt', pubKeyHash: 0x6f, scriptHash: 0xc4, validWitnessVersions: [0, 1] },
  sb: { bech32: 'sb', pubKeyHash: 0x3f, scriptHash: 0x7b, validWitnessVersions: [0, 1] }
}
const ALPHABET = ['a', 'b', 'Z', '0', '9', ' ', '-', '"', '\\', 'é', 'ß', 'ナ', 'ン', '杯', '☕', '😀', '\n']

const int = (min, max) => min + crypto.randomInt(max - min + 1)
const chance = (p) => crypto.randomInt(1000) < p * 1000
const pick = (items) => items[crypto.randomInt(items.length)]
const hex = (bytes) => crypto.randomBytes(bytes).toString('hex')

function privateKey () {
  for (;;) {
    const key = crypto.randomBytes(32)
    if (secp256k1.privateKeyVerify(key)) return key
  }
}

function amountMsat () {
  switch (crypto.randomInt(6)) {
    case 0: return null
    case 1: return String(int(1, 20000000) * 1000) // whole satoshis
    case 2: return String(int(1, 1000000000000)) // any millisatoshis (p or n)
    case 3: return String(int(1, 21) * 100000000000) // whole bitcoin: no multiplier
    case 4: return String(int(1, 999) * 100000000) // milli-bitcoin
    default: return String(int(1, 99999) * 100) // nano-bitcoin
  }
}

function description () {
  let text = ''
  // Up to 150 characters of at most 4 UTF-8 bytes: within BOLT11's 639 bytes, and over bech32's 90 characters.
  for (let i = chance(0.2) ? int(100, 150) : int(0, 40); i > 0; i--) text += pick(ALPHABET)
  return text
}

function routeHint () {
  return {
    pubkey: Buffer.from(secp256k1.publicKeyCreate(privateKey())).toString('hex'),
    short_channel_id: hex(8),
    fee_base_msat: int(0, 5000),
    fee_proportional_millionths: int(0, 5000),
    cltv_expiry_delta: int(1, 500)
  }
}

function randomInvoice () {
  const key = privateKey()
  const input = {
    network: pick(Object.keys(NETWORKS)),
    millisatoshis: amountMsat(),
    timestamp: int(1000000000, 4000000000),
    paymentHash: hex(32),
    paymentSecret: chance(0.6) ? hex(32) : null,
    description: null,
    descriptionHash: null,
    expireTime: chance(0.8) ? int(1, 10000000) : null,
    minFinalCltvExpiry: chance(0.8) ? int(1, 2000) : null,
    payeeNodeKeyTag: chance(0.3),
    payeeNodeKey: Buffer.from(secp256k1.publicKeyCreate(key)).toString('hex')
  }
  if (chance(0.7)) input.description = description()
  else input.descriptionHash = hex(32)

  const tags = [{ tagName: 'payment_hash', data: input.paymentHash }]
  if (input.paymentSecret) {
    tags.push({ tagName: 'payment_secret', data: input.paymentSecret })
    const required = chance(0.5)
    tags.push({
      tagName: 'feature_bits',
      data: {
        word_length: 4,
        var_onion_optin: { required, supported: !required },
        payment_secret: { required, supported: !required },
        basic_mpp: { required: false, supported: chance(0.5) }
      }
    })
  }
  if (input.description !== null) tags.push({ tagName: 'description', data: input.description })
  else tags.push({ tagName: 'purpose_commit_hash', data: input.descriptionHash })
  if (input.expireTime !== null) tags.push({ tagName: 'expire_time', data: input.expireTime })
  if (input.minFinalCltvExpiry !== null) tags.push({ tagName: 'min_final_cltv_expiry', data: input.minFinalCltvExpiry })
  if (input.payeeNodeKeyTag) tags.push({ tagName: 'payee_node_key', data: input.payeeNodeKey })
  if (chance(0.2)) tags.push({ tagName: 'routing_info', data: [routeHint(), routeHint()] })

  const unsigned = bolt11.encode({
    network: NETWORKS[input.network],
    timestamp: input.timestamp,
    millisatoshis: input.millisatoshis === null ? undefined : input.millisatoshis,
    tags
  }, false)
  const signed = bolt11.sign(unsigned, key)
  return { input, decoded: decode(signed.paymentRequest) }
}

function decode (paymentRequest) {
  const prefix = paymentRequest.toLowerCase().match(/^ln([a-z]+)/)
  const decoded = bolt11.decode(paymentRequest, prefix && prefix[1] === 'tbs' ? NETWORKS.tbs : undefined)
  const tag = (name) => {
    const found = decoded.tags.find((t) => t.tagName === name)
    return found === undefined ? null : found.data
  }
  return {
    paymentRequest: decoded.paymentRequest,
    network: decoded.network.bech32,
    millisatoshis: decoded.millisatoshis === null ? null : String(decoded.millisatoshis),
    timestamp: decoded.timestamp,
    payeeNodeKey: decoded.payeeNodeKey,
    paymentHash: tag('payment_hash'),
    paymentSecret: tag('payment_secret'),
    description: tag('description'),
    descriptionHash: tag('purpose_commit_hash'),
    expireTime: tag('expire_time'),
    minFinalCltvExpiry: tag('min_final_cltv_expiry'),
    payeeNodeKeyTag: tag('payee_node_key')
  }
}

function main () {
  const mode = process.argv[2]
  if (mode === 'sign') {
    const count = Number(process.argv[3])
    const vectors = []
    for (let i = 0; i < count; i++) vectors.push(randomInvoice())
    process.stdout.write(JSON.stringify(vectors))
  } else if (mode === 'decode') {
    const invoices = JSON.parse(require('fs').readFileSync(0, 'utf8'))
    const results = invoices.map((invoice) => {
      try {
        return { ok: true, decoded: decode(invoice) }
      } catch (e) {
        return { ok: false, error: String(e && e.message) }
      }
    })
    process.stdout.write(JSON.stringify(results))
  } else {
    process.stderr.write('usage: node bolt11-vectors.js sign COUNT | decode < invoices.json\n')
    process.exit(2)
  }
}

main()
