package fsm

import (
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/google/btree"
)

// transferIndex orders, beside State.Transfers, the transfers that the
// window's prune and the engine's tick look for, so that neither scans the
// whole table: their cost follows what they remove or what is due, not the
// live transfers. It is derived from the table alone, so it is not in
// snapshots: the machine keeps it in every apply and rebuilds it on
// restore. Nothing in it reads a clock.
type transferIndex struct {
	// ready holds the client transfers due whenever the engine looks:
	// PLANNED with no NextRetry, and INTERRUPTED; retrying the PLANNED
	// ones waiting for their NextRetry, soonest first.
	ready    *btree.BTreeG[uint64]
	retrying *btree.BTreeG[retryKey]
	// inTasks holds the transfers RUNNING in their post- or error-tasks
	// (Transfer.InTasks), which a failover hands over.
	inTasks map[uint64]struct{}
	// running holds the RUNNING transfers, among which a takeover looks
	// for those an older epoch left.
	running map[uint64]struct{}
	// uploads holds the server-mode uploads of each LocalPath, among
	// which a client's resume looks for its cut ones.
	uploads map[string]map[uint64]struct{}
	// statuses counts the transfers of each status (the metrics).
	statuses map[string]int
	// archived and unarchived hold the finished transfers, by ID; held
	// those of them whose parent is live (its TRANSFER task still finds
	// them by key), which the window does not count.
	archived, unarchived *btree.BTreeG[uint64]
	held                 map[uint64]struct{}
	// children are the IDs of the transfers with each Parent; childKeys
	// the transfer of each ChildKey (an add refuses a second one).
	children  map[uint64]map[uint64]struct{}
	childKeys map[string]uint64
}

type retryKey struct {
	at time.Time
	id uint64
}

func (a retryKey) less(b retryKey) bool {
	if c := a.at.Compare(b.at); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

// indexDegree is the B-trees' degree (google/btree's advice for in-memory
// trees of small items).
const indexDegree = 32

func newTransferIndex(ts map[uint64]Transfer) *transferIndex {
	x := &transferIndex{
		ready:      btree.NewOrderedG[uint64](indexDegree),
		retrying:   btree.NewG(indexDegree, retryKey.less),
		inTasks:    map[uint64]struct{}{},
		running:    map[uint64]struct{}{},
		uploads:    map[string]map[uint64]struct{}{},
		statuses:   map[string]int{},
		archived:   btree.NewOrderedG[uint64](indexDegree),
		unarchived: btree.NewOrderedG[uint64](indexDegree),
		held:       map[uint64]struct{}{},
		children:   map[uint64]map[uint64]struct{}{},
		childKeys:  map[string]uint64{},
	}
	for _, t := range ts {
		x.add(ts, t)
	}
	return x
}

// add files t, which ts holds, under every order it belongs to.
func (x *transferIndex) add(ts map[uint64]Transfer, t Transfer) {
	switch {
	case t.IsServer:
	case t.Status == StatusInterrupted, t.Status == StatusPlanned && t.NextRetry.IsZero():
		x.ready.ReplaceOrInsert(t.ID)
	case t.Status == StatusPlanned:
		x.retrying.ReplaceOrInsert(retryKey{t.NextRetry, t.ID})
	}
	if t.InTasks() {
		x.inTasks[t.ID] = struct{}{}
	}
	if t.Status == StatusRunning {
		x.running[t.ID] = struct{}{}
	}
	if t.IsServer && !t.IsSend {
		if x.uploads[t.LocalPath] == nil {
			x.uploads[t.LocalPath] = map[uint64]struct{}{}
		}
		x.uploads[t.LocalPath][t.ID] = struct{}{}
	}
	x.statuses[t.Status]++
	if t.Finished() {
		if t.Archived {
			x.archived.ReplaceOrInsert(t.ID)
		} else {
			x.unarchived.ReplaceOrInsert(t.ID)
		}
		if t.Parent != 0 && live(ts, t.Parent) {
			x.held[t.ID] = struct{}{}
		}
	}
	if t.Parent != 0 {
		if x.children[t.Parent] == nil {
			x.children[t.Parent] = map[uint64]struct{}{}
		}
		x.children[t.Parent][t.ID] = struct{}{}
	}
	if t.ChildKey != "" {
		x.childKeys[t.ChildKey] = t.ID
	}
}

// remove takes t, as add filed it, out of every order.
func (x *transferIndex) remove(t Transfer) {
	x.ready.Delete(t.ID)
	x.retrying.Delete(retryKey{t.NextRetry, t.ID})
	delete(x.inTasks, t.ID)
	delete(x.running, t.ID)
	if t.IsServer && !t.IsSend {
		delete(x.uploads[t.LocalPath], t.ID)
		if len(x.uploads[t.LocalPath]) == 0 {
			delete(x.uploads, t.LocalPath)
		}
	}
	if x.statuses[t.Status]--; x.statuses[t.Status] == 0 {
		delete(x.statuses, t.Status)
	}
	x.archived.Delete(t.ID)
	x.unarchived.Delete(t.ID)
	delete(x.held, t.ID)
	if t.Parent != 0 {
		delete(x.children[t.Parent], t.ID)
		if len(x.children[t.Parent]) == 0 {
			delete(x.children, t.Parent)
		}
	}
	if t.ChildKey != "" && x.childKeys[t.ChildKey] == t.ID {
		delete(x.childKeys, t.ChildKey)
	}
}

// rehold refiles the finished children of parent, whose liveness changed.
func (x *transferIndex) rehold(ts map[uint64]Transfer, parent uint64) {
	isLive := live(ts, parent)
	for id := range x.children[parent] {
		switch {
		case !ts[id].Finished():
		case isLive:
			x.held[id] = struct{}{}
		default:
			delete(x.held, id)
		}
	}
}

// live reports whether transfer id is in ts and not finished.
func live(ts map[uint64]Transfer, id uint64) bool {
	t, ok := ts[id]
	return ok && !t.Finished()
}

// putTransfer stores t in the table and its index.
func (s *State) putTransfer(t Transfer) {
	old, had := s.Transfers[t.ID]
	if had {
		s.ix.remove(old)
	}
	s.Transfers[t.ID] = t
	s.ix.add(s.Transfers, t)
	if !had || old.Finished() != t.Finished() {
		s.ix.rehold(s.Transfers, t.ID)
	}
}

// dropTransfer deletes transfer id from the table and its index.
func (s *State) dropTransfer(id uint64) {
	t, ok := s.Transfers[id]
	if !ok {
		return
	}
	s.ix.remove(t)
	delete(s.Transfers, id)
	s.ix.rehold(s.Transfers, id)
}

// index is the state's transfer index; a copy (State()) has none and
// builds one for the call.
func (s *State) index() *transferIndex {
	if s.ix != nil {
		return s.ix
	}
	return newTransferIndex(s.Transfers)
}

// Due yields the client transfers due to start at now, by ID (the oldest
// first): PLANNED ones whose NextRetry, if any, has come, and INTERRUPTED
// ones. Its cost follows what it yields and the retries due, not the
// table; like any read in State.Read, it must be consumed under the read.
func (s *State) Due(now time.Time) iter.Seq[Transfer] {
	x := s.index()
	return func(yield func(Transfer) bool) {
		var retries []uint64
		x.retrying.Ascend(func(k retryKey) bool {
			if now.Before(k.at) {
				return false
			}
			retries = append(retries, k.id)
			return true
		})
		slices.Sort(retries)
		more := true
		x.ready.Ascend(func(id uint64) bool {
			for ; len(retries) > 0 && retries[0] < id; retries = retries[1:] {
				if more = yield(s.Transfers[retries[0]]); !more {
					return false
				}
			}
			more = yield(s.Transfers[id])
			return more
		})
		for ; more && len(retries) > 0; retries = retries[1:] {
			more = yield(s.Transfers[retries[0]])
		}
	}
}

// Unarchived yields the finished transfers not yet in the history table,
// by ID.
func (s *State) Unarchived() iter.Seq[Transfer] { return s.byID(s.index().unarchived) }

// Archived yields the finished transfers already in the history table
// that the state still keeps (a window of RecentWindow), by ID.
func (s *State) Archived() iter.Seq[Transfer] { return s.byID(s.index().archived) }

// byID yields the transfers of an index tree, by ID.
func (s *State) byID(ids *btree.BTreeG[uint64]) iter.Seq[Transfer] {
	return func(yield func(Transfer) bool) {
		ids.Ascend(func(id uint64) bool { return yield(s.Transfers[id]) })
	}
}

// InTasks yields the transfers RUNNING in their post- or error-tasks
// (Transfer.InTasks), in no order.
func (s *State) InTasks() iter.Seq[Transfer] { return s.inSet(s.index().inTasks) }

// Running yields the RUNNING transfers, in no order.
func (s *State) Running() iter.Seq[Transfer] { return s.inSet(s.index().running) }

// Uploads yields the server-mode uploads (IsServer, not IsSend) of
// localPath, in no order.
func (s *State) Uploads(localPath string) iter.Seq[Transfer] {
	return s.inSet(s.index().uploads[localPath])
}

// inSet yields the transfers of an index set, in no order.
func (s *State) inSet(ids map[uint64]struct{}) iter.Seq[Transfer] {
	return func(yield func(Transfer) bool) {
		for id := range ids {
			if !yield(s.Transfers[id]) {
				return
			}
		}
	}
}

// StatusCounts counts the transfers of each status; the map is the
// caller's.
func (s *State) StatusCounts() map[string]int {
	return maps.Clone(s.index().statuses)
}

// ChildOf is the transfer added with key (Transfer.ChildKey), 0 when none.
func (s *State) ChildOf(key string) uint64 {
	return s.index().childKeys[key]
}

// prune bounds the finished transfers kept: the newest RecentWindow
// archived ones, and at most MaxUnarchived not yet archived, not counting
// those a live parent holds. It touches only what it removes.
func (m *Machine) prune() {
	x := m.s.ix
	for _, w := range []struct {
		set  *btree.BTreeG[uint64]
		keep int
	}{{x.archived, RecentWindow}, {x.unarchived, MaxUnarchived}} {
		excess := w.set.Len() - w.keep
		if excess <= 0 {
			continue
		}
		for id := range x.held {
			if w.set.Has(id) {
				excess--
			}
		}
		var drop []uint64
		w.set.Ascend(func(id uint64) bool {
			if excess <= 0 {
				return false
			}
			if _, ok := x.held[id]; !ok {
				drop = append(drop, id)
				excess--
			}
			return true
		})
		for _, id := range drop {
			m.s.dropTransfer(id)
		}
	}
}
