# The upstream servers of national.conf, from a centre's roster: one line per
# centre that publishes its public chat URL (web.public_url), in the order of
# the centre ids. Usage (docs/operations.md, "One national address"):
#   curl -s -H "Authorization: Bearer $(cat /var/lib/helpmesh/admin.token)" \
#     https://staff.centre.example:8443/v1/roster \
#     | jq -r -f centres-from-roster.jq > /etc/nginx/helpmesh-centres.conf
# A public_url without a port gets the scheme's (443 or 80). One failure
# (refused, timed out, 502, 503 draining, 504) takes a centre out of turn for
# 10 s; then one visitor's request tries it again, and is passed on to the
# next centre if it still fails.
.centres | to_entries | sort_by(.key)[]
| .value.public_url // empty
| capture("^(?<scheme>https?)://(?<host>[^/]+)/?$")
| if (.host | test(":[0-9]+$")) then .host
  elif .scheme == "https" then .host + ":443"
  else .host + ":80" end
| "server \(.) max_fails=1 fail_timeout=10s;"
