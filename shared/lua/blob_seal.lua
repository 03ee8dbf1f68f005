-- Mark a blob complete by writing its meta hash (BlobStore.put_file), after its chunks.
-- Only a writer that still holds its reference may seal, and only when every chunk is there,
-- so a meta hash always means a complete, referenced blob.
--
-- KEYS[1] blob meta hash   KEYS[2] blob refs set
-- ARGV[1] the writer's reference   ARGV[2] size (bytes)   ARGV[3] chunk count
-- ARGV[4] created_at (unix seconds)
-- Chunk keys are KEYS[1] .. ':chunk:' .. n (shared.keys.Keys.blob_chunk).
--
-- Returns 1 when the blob is sealed (by this call or an earlier writer), 0 when the reference
-- is gone, -1 - n when chunk n is missing.
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
for i = 0, tonumber(ARGV[3]) - 1 do
  if redis.call('EXISTS', KEYS[1] .. ':chunk:' .. i) == 0 then return -1 - i end
end
redis.call('HSET', KEYS[1], 'size', ARGV[2], 'chunks', ARGV[3], 'created_at', ARGV[4])
return 1
