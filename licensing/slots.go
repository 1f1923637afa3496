package licensing

import (
	"sort"
	"time"
)

// Member is what the slot rules need to know about one registered node; the
// state machine builds it from its node registry.
type Member struct {
	ID string
	// Seq is the order of first registration: lower Seq gets a slot first.
	Seq uint64
	// Offline is set by the leader for a node that gossip reports dead.
	Offline bool
	// OfflineSince is when the node was marked OFFLINE (the log entry's time);
	// zero while Offline means "long enough ago".
	OfflineSince time.Time
	// Licensed is whether the node held a slot in the previous assignment.
	// Feeding it back keeps slots sticky: a node that took over a slot keeps
	// it when an earlier node comes back, instead of being demoted (possibly
	// while ACTIVE). Leave it false everywhere for a purely claimants assignment.
	Licensed bool
}

// holdsClaim reports whether m may hold (or be given) a slot at now: it is
// online, or OFFLINE for no longer than deadline.
func (m Member) holdsClaim(now time.Time, deadline time.Duration) bool {
	if !m.Offline {
		return true
	}
	if m.OfflineSince.IsZero() {
		return false
	}
	return now.Sub(m.OfflineSince) <= deadline
}

// Slots returns the set of licensed node IDs at now: at most l's node limit
// of them (none once l has expired). Members that held a slot keep it while
// they have a claim; free slots go to the other members in order of first
// registration (Seq, then ID). A member OFFLINE for longer than deadline has
// no claim, so its slot passes to the next unlicensed member in order. The
// result never contains false entries and is never nil.
func Slots(l License, members []Member, now time.Time, deadline time.Duration) map[string]bool {
	limit := l.NodeLimit(now)
	slots := make(map[string]bool, limit)
	if limit == 0 {
		return slots
	}
	claimants := make([]Member, 0, len(members))
	seen := make(map[string]bool, len(members))
	sorted := append([]Member(nil), members...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Seq != sorted[j].Seq {
			return sorted[i].Seq < sorted[j].Seq
		}
		return sorted[i].ID < sorted[j].ID
	})
	for _, m := range sorted {
		if m.ID == "" || seen[m.ID] { // a duplicate never gets a second chance
			continue
		}
		seen[m.ID] = true
		if m.holdsClaim(now, deadline) {
			claimants = append(claimants, m)
		}
	}
	// Two passes over the same order: holders first, then newcomers.
	for _, holders := range []bool{true, false} {
		for _, m := range claimants {
			if len(slots) == limit {
				return slots
			}
			if m.Licensed == holders {
				slots[m.ID] = true
			}
		}
	}
	return slots
}

// MayBeActive reports whether candidate may be the ACTIVE node at now. A
// licensed candidate (slots[candidate]) always may. An unlicensed one may
// only when l allows exactly one node and no licensed node other than the
// candidate is alive, that is no licensed node is PASSIVE and the licensed
// ACTIVE one is gone (the seed: "an unlicensed node may participate ... only
// if there is no other Passive Cluster Node and the licensed number of nodes
// is 1"). slots is the result of Slots; alive says which nodes are running
// (gossip or the registry, as the caller judges); a node missing from it is
// taken as not running.
func MayBeActive(l License, now time.Time, candidate string, slots map[string]bool, alive map[string]bool) bool {
	if slots[candidate] {
		return true
	}
	if l.NodeLimit(now) != 1 {
		return false
	}
	for id, licensed := range slots {
		if licensed && id != candidate && alive[id] {
			return false
		}
	}
	return true
}
