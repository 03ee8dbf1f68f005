-- Settle a claimed Idempotency-Key (IdempotencyStore.settle / release), only while the claim
-- named by the token still holds it: a claimant whose lease ran out touches nothing.
--
-- KEYS[1] the key's hash
-- ARGV[1] the claim's token   ARGV[2] the job id, or '' to release the key (nothing created)
-- ARGV[3] how long the key keeps the job (ms), when settling
--
-- Returns 1 when the key was settled or released, 0 when the claim no longer held it.
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'job_id', ARGV[2])
redis.call('HDEL', KEYS[1], 'token')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
