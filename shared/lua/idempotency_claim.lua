-- Claim an Idempotency-Key for one request (IdempotencyStore.claim), or read who holds it.
-- Atomic, so of concurrent requests with one key exactly one creates the job.
--
-- KEYS[1] the key's hash (fingerprint, token while pending, job_id once settled)
-- ARGV[1] the request's fingerprint   ARGV[2] a token naming this claim
-- ARGV[3] lease (ms): a claimant that dies before it settles frees the key after this
--
-- Returns {'claimed'}, or {'held', fingerprint, job_id or ''} when the key was already taken.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local held = redis.call('HMGET', KEYS[1], 'fingerprint', 'job_id')
  return {'held', held[1] or '', held[2] or ''}
end
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'token', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'claimed'}
