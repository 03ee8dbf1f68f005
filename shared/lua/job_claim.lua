-- Claim one chunk of a job for scoring (JobStore.claim_chunk). Atomic, so queued -> running
-- happens once and a redelivered chunk that was already scored is never scored again.
--
-- KEYS[1] job hash          KEYS[2] attempts hash (chunk -> starts)   KEYS[3] done set
-- KEYS[4] notify list       KEYS[5] metrics hash
-- KEYS[6] backlog hash      KEYS[7] backlog rows (job_create.lua)
-- ARGV[1] chunk index       ARGV[2] now (unix seconds)                ARGV[3] max attempts
-- ARGV[4] JobStatus.QUEUED  ARGV[5] JobStatus.RUNNING                 ARGV[6] JobStatus.FAILED
-- ARGV[7] job id
--
-- Returns {outcome, starts}: outcome is a ClaimOutcome value, starts the chunk's start count
-- after this claim (0 when the chunk was not started).
local queued, running, failed = ARGV[4], ARGV[5], ARGV[6]
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing', 0} end
if st ~= queued and st ~= running then return {'job_finished', 0} end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return {'duplicate', 0} end
local ttl = redis.call('PTTL', KEYS[1])
local n = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if n > tonumber(ARGV[3]) then
  local err = cjson.encode({code = 'worker_lost', message = 'Chunk ' .. ARGV[1] ..
    ' was started ' .. (n - 1) .. ' times and never finished (its worker was killed, ran out of memory or lost ' ..
    'Redis). Check the worker logs, then resubmit the job.'})
  redis.call('HSET', KEYS[1], 'status', failed, 'error', err, 'finished_at', ARGV[2])
  redis.call('HINCRBY', KEYS[5], 'jobs_' .. failed, 1)
  redis.call('RPUSH', KEYS[4], failed)
  local backlog_rows = redis.call('HGET', KEYS[6], ARGV[7])
  if backlog_rows then
    redis.call('HDEL', KEYS[6], ARGV[7])
    redis.call('DECRBY', KEYS[7], backlog_rows)
  end
  if ttl > 0 then redis.call('PEXPIRE', KEYS[4], ttl) end
  return {'attempts_exhausted', n}
end
if st == queued then
  redis.call('HSET', KEYS[1], 'status', running, 'started_at', ARGV[2])
end
return {'run', n}
