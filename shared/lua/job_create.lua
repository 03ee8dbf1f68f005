-- Create a queued job with its input chunks (JobStore.create), unless the instance's work
-- accepted and not finished would pass its limits. Atomic, so concurrent submissions from
-- several API processes never pass a limit together, and the backlog counters (KEYS[7],
-- KEYS[8]) always equal the jobs they describe: job_claim, job_complete, job_finish and
-- job_forget remove the job from them exactly once.
--
-- KEYS[1] job hash   KEYS[2] instance jobs index   KEYS[3] deployment jobs index
-- KEYS[4] jobs expiry zset   KEYS[5] active jobs set   KEYS[6] metrics hash
-- KEYS[7] backlog hash (job_id -> rows)   KEYS[8] backlog rows (integer)
-- KEYS[9] the online request stream   KEYS[10..] the input chunk keys, in chunk order
-- ARGV[1] job id   ARGV[2] rows   ARGV[3] max queued rows (0: none)
-- ARGV[4] max queued jobs (0: none)   ARGV[5] TTL (ms)   ARGV[6] created_at (index score)
-- ARGV[7] expiry member   ARGV[8] expires_at (expiry score)   ARGV[9] active member
-- ARGV[10] n, the number of job hash fields; ARGV[11 .. 10 + 2n] field, value pairs
-- ARGV[11 + 2n] m, the number of stream entry fields (0: the job is not streamed)
-- ARGV[12 + 2n .. 11 + 2n + 2m] field, value pairs of the entry added to KEYS[9]
-- ARGV[12 + 2n + 2m ..] the input chunks, in the order of KEYS[10..]
--
-- An online request travels as that stream entry (holding its rows), written with its job in
-- this one step: a worker can never see the entry without the job, nor the job stay without it.
--
-- Returns {'created', 0}, or {'queued_rows_limit' | 'queued_jobs_limit', what is queued now}
-- when nothing was written.
local rows, max_rows, max_jobs = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local jobs_now = redis.call('HLEN', KEYS[7])
if max_jobs > 0 and jobs_now + 1 > max_jobs then return {'queued_jobs_limit', jobs_now} end
local rows_now = tonumber(redis.call('GET', KEYS[8]) or '0')
if max_rows > 0 and rows_now + rows > max_rows then return {'queued_rows_limit', rows_now} end
local ttl = ARGV[5]
local n = tonumber(ARGV[10])
local mapping = {}
for i = 11, 10 + 2 * n do mapping[#mapping + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(mapping))
redis.call('PEXPIRE', KEYS[1], ttl)
local m = tonumber(ARGV[11 + 2 * n])
local first_chunk = 12 + 2 * n + 2 * m
for i = 10, #KEYS do
  redis.call('SET', KEYS[i], ARGV[first_chunk + i - 10], 'PX', ttl)
end
if m > 0 then
  local entry = {}
  for i = 12 + 2 * n, 11 + 2 * n + 2 * m do entry[#entry + 1] = ARGV[i] end
  redis.call('XADD', KEYS[9], '*', unpack(entry))
end
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
-- When the job's keys expire, the next listing drops it from both indexes.
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7])
redis.call('SADD', KEYS[5], ARGV[9])
redis.call('HINCRBY', KEYS[6], 'jobs_created', 1)
redis.call('HSET', KEYS[7], ARGV[1], rows)
redis.call('INCRBY', KEYS[8], rows)
return {'created', 0}
