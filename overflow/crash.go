package overflow

// Crash stops the gossip without a goodbye, as a killed process would look
// to the other centres. Other packages' fault tests use it.
func (g *Gossip) Crash() error { return g.crash() }
