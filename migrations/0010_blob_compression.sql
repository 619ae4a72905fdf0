-- How a blob's bytes are stored: NULL as received, 'zstd' a zstd frame of them
-- (src/store/blob_codec.rs). `size` stays the size as received.
ALTER TABLE blobs ADD COLUMN compression TEXT;
