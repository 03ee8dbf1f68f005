-- Drop one reference to a blob (BlobStore.release); the last reference deletes the blob,
-- complete or not. Atomic against BlobStore.put_file, which adds its reference before it
-- looks at or writes the blob: either the reference arrives first and the blob stays, or the
-- blob is gone entirely and the writer stores it again.
--
-- KEYS[1] blob meta hash   KEYS[2] blob refs set
-- ARGV[1] the reference to drop ("instance/model_id")
-- ARGV[2] how many chunks a writer that failed may have left (0 when unknown)
-- Chunk keys are KEYS[1] .. ':chunk:' .. n (shared.keys.Keys.blob_chunk); writers store them
-- from 0 upwards, so chunks are deleted up to the larger of the sealed count and ARGV[2],
-- and beyond that until the first missing one.
--
-- Returns 1 if the blob was deleted, else 0.
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
local sealed = math.max(tonumber(redis.call('HGET', KEYS[1], 'chunks') or '0'), tonumber(ARGV[2]))
local i = 0
while redis.call('DEL', KEYS[1] .. ':chunk:' .. i) == 1 or i < sealed do i = i + 1 end
redis.call('DEL', KEYS[1])
return 1
