-- Parts under 64 MB (uncompressed) are stored Compact: one data file for all columns instead of two per
-- column. Every insert (at most ~32 MB of WAL) and the first merges write such parts: ~10 files per part
-- instead of ~80 for `events`, which cut the ingester's CPU per row (file creation is most of the kernel
-- time of an insert). Larger merged parts stay Wide, where reading a few columns and vertical merges pay.
ALTER TABLE events MODIFY SETTING min_bytes_for_wide_part = 67108864;
ALTER TABLE usage_ledger MODIFY SETTING min_bytes_for_wide_part = 67108864;
