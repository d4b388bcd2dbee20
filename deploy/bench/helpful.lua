-- wrk script: POST /review/{id}/helpful for ids 1..REVIEWS (env) with the write key: a
-- steady stream of writes, each one an invalidation the other instances must hear.
local reviews = tonumber(os.getenv("REVIEWS") or "1000")
local key = os.getenv("KEY")
math.randomseed(os.time())
request = function()
  local headers = { ["Authorization"] = "Bearer " .. key }
  return wrk.format("POST", "/review/" .. math.random(1, reviews) .. "/helpful", headers)
end
