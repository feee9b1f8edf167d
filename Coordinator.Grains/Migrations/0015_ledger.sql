-- 0015: the ledger's running count of receipts (issue #17), so that the explorer's total_receipts is one probe of the tip
-- and of the unsealed index instead of a count of every receipt. No block is sealed before this migration: the sealer
-- that writes ledger_blocks comes with it.

-- Receipts sealed in this block and in every block before it. Not part of the block's hash (the header is height,
-- sealed_at, prev_hash, merkle_root and receipt_count); `ledger verify` checks it against the running sum all the same.
ALTER TABLE ledger_blocks ADD COLUMN total_receipts bigint NOT NULL CHECK (total_receipts >= receipt_count);
ALTER TABLE ledger_blocks ADD CONSTRAINT ledger_blocks_not_empty CHECK (receipt_count > 0);

COMMENT ON TABLE ledger_blocks IS 'The ledger: blocks of receipts, hash-chained; sealed by the singleton LedgerGrain (docs/ARCHITECTURE.md, "Ledger").';
COMMENT ON COLUMN ledger_blocks.hash IS 'SHA-256 of the 84-byte header: height, sealed_at (Unix ms), prev_hash, merkle_root, receipt_count; integers big-endian.';
COMMENT ON COLUMN ledger_blocks.merkle_root IS 'RFC 6962 Merkle tree hash over the receipts'' hashes in seq order: leaf SHA-256(0x00||hash), node SHA-256(0x01||l||r), odd node promoted.';
