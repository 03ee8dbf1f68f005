-- Create a queued job with its input chunks (JobStore.create), unless the instance's work
-- accepted and not finished would pass its limits, or the deployment the caller validated the
-- rows against is no longer the one stored. Atomic, so concurrent submissions from several API
-- processes never pass a limit together, a job never names a model its deployment has moved
-- from, and the backlog counters (KEYS[7], KEYS[8]) always equal the jobs they describe:
-- job_claim, job_complete, job_finish and job_forget remove the job from them exactly once.
--
-- KEYS[1] job hash   KEYS[2] instance jobs index   KEYS[3] deployment jobs index
-- KEYS[4] jobs expiry zset   KEYS[5] active jobs set   KEYS[6] metrics hash
-- KEYS[7] backlog hash (job_id -> rows)   KEYS[8] backlog rows (integer)
-- KEYS[9] the online request stream   KEYS[10] the deployment record
-- KEYS[11..] the input chunk keys, in chunk order
-- ARGV[1] job id   ARGV[2] rows   ARGV[3] max queued rows (0: none)
-- ARGV[4] max queued jobs (0: none)   ARGV[5] TTL (ms)   ARGV[6] created_at (index score)
-- ARGV[7] expiry member   ARGV[8] expires_at (expiry score)   ARGV[9] active member
-- ARGV[10] the SHA-1 (hex) of the deployment record as the caller read it ('': no check)
-- ARGV[11] the job hash's fields, a JSON object of strings
-- ARGV[12] the stream entry's fields but j and x, a JSON object of strings ('': the job is
--          not streamed)
-- ARGV[13..] the input chunks, in the order of KEYS[11..]; for a streamed job, its one
--          chunk, which goes into the entry (x) and no key
--
-- The fields travel as JSON, two arguments instead of one per field and value: redis-py packs
-- each argument in Python, a fifth of an online request's create call.
-- An online request travels as that stream entry (holding its rows), written with its job in
-- this one step: a worker can never see the entry without the job, nor the job stay without it.
--
-- Returns {'created', 0}; {'queued_rows_limit' | 'queued_jobs_limit', what is queued now}
-- or {'deployment_changed', 0} when nothing was written.
local function flat(object)
  local pairs_list = {}
  for field, value in pairs(cjson.decode(object)) do
    pairs_list[#pairs_list + 1] = field
    pairs_list[#pairs_list + 1] = value
  end
  return pairs_list
end
if ARGV[10] ~= '' then
  local current = redis.call('GET', KEYS[10])
  if not current or redis.sha1hex(current) ~= ARGV[10] then return {'deployment_changed', 0} end
end
local rows, max_rows, max_jobs = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local jobs_now = redis.call('HLEN', KEYS[7])
if max_jobs > 0 and jobs_now + 1 > max_jobs then return {'queued_jobs_limit', jobs_now} end
local rows_now = tonumber(redis.call('GET', KEYS[8]) or '0')
if max_rows > 0 and rows_now + rows > max_rows then return {'queued_rows_limit', rows_now} end
local ttl = ARGV[5]
redis.call('HSET', KEYS[1], unpack(flat(ARGV[11])))
redis.call('PEXPIRE', KEYS[1], ttl)
for i = 11, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 2], 'PX', ttl)
end
if ARGV[12] ~= '' then
  local entry = flat(ARGV[12])
  entry[#entry + 1] = 'j'
  entry[#entry + 1] = ARGV[1]
  entry[#entry + 1] = 'x'
  entry[#entry + 1] = ARGV[13]
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
