// Usage: node verify.mjs <identity multihash, hex> <record file>
// Validates the record as JavaScript IPFS nodes do (signature V2, data, expiry) for the name
// whose key the multihash inlines; prints its value and sequence, exits 1 when it is invalid.
import { readFileSync } from 'node:fs'
import { unmarshalIPNSRecord } from 'ipns'
import { ipnsValidator } from 'ipns/validator'

const [multihashHex, recordPath] = process.argv.slice(2)
const multihash = Buffer.from(multihashHex, 'hex')
const routingKey = new Uint8Array([...Buffer.from('/ipns/'), ...multihash])
const record = readFileSync(recordPath)
try {
  await ipnsValidator(routingKey, record)
  const parsed = unmarshalIPNSRecord(record)
  console.log(JSON.stringify({ value: parsed.value, sequence: parsed.sequence.toString() }))
} catch (error) {
  console.log(JSON.stringify({ invalid: error.message }))
  process.exit(1)
}
