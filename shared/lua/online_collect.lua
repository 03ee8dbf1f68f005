-- Hand an online job's answer to the request that waited for it (JobStore.collect_online),
-- in one step: the job's status, its error or result, and (unless the job is kept) the
-- deletion of everything it stored, plus the request's latency in the histogram.
--
-- KEYS[1] job hash   KEYS[2] result chunk 0   KEYS[3] input chunk 0   KEYS[4] done set
-- KEYS[5] attempts hash   KEYS[6] notify list   KEYS[7] webhook log   KEYS[8] jobs index
-- KEYS[9] deployment jobs index   KEYS[10] jobs expiry zset   KEYS[11] latency histogram
-- ARGV[1] JobStatus.COMPLETED   ARGV[2] '1' to keep the job   ARGV[3] job id
-- ARGV[4] expiry member   ARGV[5] latency bucket   ARGV[6] latency (seconds)
--
-- Returns {status, error JSON or '', result fragment or ''}, or {'missing', '', ''}.
local fields = redis.call('HMGET', KEYS[1], 'status', 'error')
local st = fields[1]
if not st then return {'missing', '', ''} end
if st ~= ARGV[1] then return {st, fields[2] or '', ''} end
local out = redis.call('GET', KEYS[2])
if not out then return {'missing', '', ''} end
if ARGV[2] ~= '1' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
  redis.call('ZREM', KEYS[8], ARGV[3])
  redis.call('ZREM', KEYS[9], ARGV[3])
  redis.call('ZREM', KEYS[10], ARGV[4])
end
redis.call('HINCRBY', KEYS[11], ARGV[5], 1)
redis.call('HINCRBY', KEYS[11], 'count', 1)
redis.call('HINCRBYFLOAT', KEYS[11], 'sum', ARGV[6])
return {st, '', out}
