// Package timing names the deployment profiles that pick Raft's, gossip's
// and the node's timeouts, so every layer reads one choice made once.
package timing

// Profile picks the timeouts for a deployment. The zero value is National,
// the safe default: Test's timeouts would mark healthy centres dead across a
// real network.
type Profile int

const (
	// National suits centres tens of milliseconds apart.
	National Profile = iota
	// Test detects failures quickly on loopback, for tests and benchmarks.
	Test
)

// String names the profile for logs and errors.
func (p Profile) String() string {
	switch p {
	case National:
		return "national"
	case Test:
		return "test"
	}
	return "unknown"
}
