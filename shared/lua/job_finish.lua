-- End a queued or running job early, as failed or canceled (JobStore.finish), and wake
-- whoever waits on its notify list.
--
-- KEYS[1] job hash   KEYS[2] notify list   KEYS[3] metrics hash
-- KEYS[4] backlog hash   KEYS[5] backlog rows (job_create.lua)
-- ARGV[1] the new JobStatus (failed or canceled)   ARGV[2] error JSON, or ''
-- ARGV[3] now (unix seconds)   ARGV[4] JobStatus.QUEUED   ARGV[5] JobStatus.RUNNING
-- ARGV[6] job id
--
-- Returns a FinishOutcome value.
local queued, running = ARGV[4], ARGV[5]
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= queued and st ~= running then return 'already_finished' end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'error', ARGV[2], 'finished_at', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'jobs_' .. ARGV[1], 1)
redis.call('RPUSH', KEYS[2], ARGV[1])
local backlog_rows = redis.call('HGET', KEYS[4], ARGV[6])
if backlog_rows then
  redis.call('HDEL', KEYS[4], ARGV[6])
  redis.call('DECRBY', KEYS[5], backlog_rows)
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 'finished'
