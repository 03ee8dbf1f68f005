-- Store a scored chunk's rows exactly once (JobStore.complete_chunk); the last chunk
-- completes the job. SADD on the done set decides which delivery of a chunk counts.
--
-- KEYS[1] job hash      KEYS[2] done set     KEYS[3] output chunk   KEYS[4] input chunk
-- KEYS[5] notify list   KEYS[6] metrics hash
-- KEYS[7] backlog hash   KEYS[8] backlog rows (job_create.lua)
-- ARGV[1] chunk index   ARGV[2] rows in the chunk   ARGV[3] result payload (bytes)
-- ARGV[4] now (unix seconds)   ARGV[5] JobStatus.RUNNING   ARGV[6] JobStatus.COMPLETED
-- ARGV[7] job id
--
-- Returns a CompleteOutcome value.
local running, completed = ARGV[5], ARGV[6]
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= running then return 'not_running' end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 'duplicate' end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[3], ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('DEL', KEYS[4])
redis.call('HINCRBY', KEYS[1], 'rows_done', ARGV[2])
redis.call('HINCRBY', KEYS[6], 'rows_scored', ARGV[2])
if redis.call('SCARD', KEYS[2]) == tonumber(redis.call('HGET', KEYS[1], 'chunks')) then
  redis.call('HSET', KEYS[1], 'status', completed, 'finished_at', ARGV[4])
  redis.call('HINCRBY', KEYS[6], 'jobs_' .. completed, 1)
  redis.call('RPUSH', KEYS[5], completed)
  local backlog_rows = redis.call('HGET', KEYS[7], ARGV[7])
  if backlog_rows then
    redis.call('HDEL', KEYS[7], ARGV[7])
    redis.call('DECRBY', KEYS[8], backlog_rows)
  end
  if ttl > 0 then redis.call('PEXPIRE', KEYS[5], ttl) end
  return 'job_completed'
end
return 'counted'
