package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/helpmesh/helpmesh/api"
	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/channels"
)

// DemoPassword is every demo volunteer's password. Demo only.
const DemoPassword = "demo-password"

// demoVolunteers are seeded per centre, in the order the demo starts them:
// the first centre gets none, so a visitor there overflows at once to a
// centre where a volunteer has signed in.
var demoVolunteers = [][]struct{ alias, langs string }{
	{},
	{{"Kari", "nb,nn,en"}, {"Ahmed", "nb,en"}},
	{{"Ingrid", "nb,en"}},
}

// seedVolunteers enrols a centre's demo volunteers the way a centre's staff
// would: the admin API adds each to the roster and returns a one-time code,
// and the volunteer sets their password with it.
func seedVolunteers(ctx context.Context, client *adminClient, centre string, i int) ([]string, error) {
	if i >= len(demoVolunteers) {
		i = len(demoVolunteers) - 1
	}
	var ids []string
	for _, v := range demoVolunteers[i] {
		id := centre + "-" + lower(v.alias)
		vol := consensus.Volunteer{ID: id, Centre: centre, Alias: v.alias, Channels: channels.All(),
			Languages: split(v.langs), Capacity: 2, Role: "volunteer"}
		var written api.VolunteerWritten
		if err := client.do(ctx, http.MethodPost, "/v1/volunteers", vol, &written); err != nil {
			return nil, fmt.Errorf("seed volunteer %s: %w", id, err)
		}
		enrol := api.EnrolRequest{Volunteer: id, Code: written.EnrolmentCode, Password: DemoPassword}
		if err := client.do(ctx, http.MethodPost, "/v1/volunteer/enrol", enrol, nil); err != nil {
			return nil, fmt.Errorf("enrol volunteer %s: %w", id, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func split(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}
