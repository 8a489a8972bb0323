-- GET the URL wrk is given, with an optional bearer token from the TOKEN environment variable.
local token = os.getenv("TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
