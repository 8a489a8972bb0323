-- POST /auth/register, each request with an email no other request uses.
local counter = 0
function request()
  counter = counter + 1
  local body = string.format(
    '{"name":"Bench User","phone":"+1 555 0100","email":"user-%d-%d@example.com","password":"benchmark-password"}',
    id, counter)
  return wrk.format("POST", "/auth/register", { ["Content-Type"] = "application/json" }, body)
end
