package fsm

// Needs is the lowest command version that carries everything c asks for:
// a new op, or a new field an older binary would silently drop, needs the
// version that introduced it. The leader writes each entry at the lowest
// version every voter applies (cluster: the version negotiation), and
// refuses, rather than writes, a command that needs more, so a cluster in a
// rolling upgrade never holds an entry one of its members cannot honour.
//
// Every op or field added with a new Version gets its case here.
// (Node.FSMVersion, which the negotiation itself carries, needs none.)
func Needs(c Command) int {
	switch {
	case c.Lease != nil && c.Lease.Grace != nil:
		return 4
	case needsSchedules(c), c.Op == OpTransferTask, c.Op == OpKeyPut, c.Op == OpKeyDelete, c.Op == OpSecretPut, c.Op == OpSecretDelete,
		c.Rule != nil && c.Rule.HasTasks(),
		c.Transfer != nil && (c.Transfer.ChildKey != "" || c.Transfer.Parent != 0 || len(c.Transfer.Tasks) > 0):
		return 3
	case c.Put != "":
		return 2
	}
	return 1
}

// KnownVersion is the command version a node is known to apply: what it
// gossiped, or 2 for a node that never said (the release before nodes told
// their version applies 2).
func KnownVersion(n Node) int {
	if n.FSMVersion == 0 {
		return 2
	}
	return n.FSMVersion
}
