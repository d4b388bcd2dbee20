-- wrk script: GET /course/{id}/reviews with ids drawn uniformly from 1..COURSES (env),
-- the hot set every mode of the cache benchmark reads.
local courses = tonumber(os.getenv("COURSES") or "1000")
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/course/" .. math.random(1, courses) .. "/reviews")
end
