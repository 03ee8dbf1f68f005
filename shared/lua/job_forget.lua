-- Take a job out of its instance's backlog (JobStore.forget_active, for a job that expired or
-- was deleted before it finished). The other scripts that end a job do the same inline: the
-- HDEL decides, so a job leaves the counters exactly once whoever gets there first.
--
-- KEYS[1] backlog hash (job_id -> rows)   KEYS[2] backlog rows (integer)
-- ARGV[1] job id
--
-- Returns the rows released (0 when the job was not in the backlog).
local rows = redis.call('HGET', KEYS[1], ARGV[1])
if not rows then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DECRBY', KEYS[2], rows)
return tonumber(rows)
