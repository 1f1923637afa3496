package cluster

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Failed logins are counted cluster-wide through gossip, not through Raft:
// a login storm must not become a storm of log entries beside the lease
// renewals. Each node tells the others of every failed login it saw
// (ShareLoginFailure) and counts theirs as its own (Config.OnLoginFailure),
// so an attacker gains nothing by spreading guesses over the nodes' APIs,
// and a new ACTIVE node goes on slowing an attack on the SFTP and FTP
// listeners where its predecessor left off. Gossip is encrypted and
// authenticated with the cluster's key: only members can report failures
// (and so lock accounts out).

// loginMsg is the gossip message of one failed login; its first byte is
// msgLoginFailure, the rest JSON. Gossip may hand a node the same message
// more than once (each is retransmitted to several random members), so it
// names its origin (node and process) and a sequence number.
type loginMsg struct {
	Origin  string `json:"o"`
	Seq     uint64 `json:"n"`
	Addr    string `json:"a"`
	Account string `json:"u"`
}

const (
	msgLoginFailure = 'L'
	// maxQueuedLogins bounds the reports waiting to be gossiped; in a
	// storm the oldest are dropped, and every node still counts what it
	// saw itself.
	maxQueuedLogins = 4096
)

// ShareLoginFailure tells the other nodes of a failed login of account from
// addr, as authguard.Options.Share wants it. It never blocks.
func (n *Node) ShareLoginFailure(addr, account string) {
	q := n.logins.Load()
	if q == nil {
		return
	}
	b, err := json.Marshal(loginMsg{Origin: n.cfg.NodeID + "/" + n.session, Seq: n.loginSeq.Add(1), Addr: addr, Account: account})
	if err != nil {
		return
	}
	q.QueueBroadcast(broadcast(append([]byte{msgLoginFailure}, b...)))
	if q.NumQueued() > maxQueuedLogins {
		q.Prune(maxQueuedLogins)
	}
}

// loginReceived counts a failure another node reported.
func (n *Node) loginReceived(b []byte) {
	var m loginMsg
	if n.cfg.OnLoginFailure == nil || json.Unmarshal(b, &m) != nil || m.Account == "" {
		return
	}
	if n.loginsSeen.first(m.Origin, m.Seq, time.Now()) {
		n.cfg.OnLoginFailure(m.Addr, m.Account)
	}
}

// loginDedup remembers, per origin, the sequence numbers seen lately.
type loginDedup struct {
	mu      sync.Mutex
	origins map[string]*originSeen
}

type originSeen struct {
	floor, top uint64 // numbers at or below floor are taken as seen
	seen       map[uint64]struct{}
	heard      time.Time
}

const (
	// dedupWindow is how far behind the newest number a late copy is still
	// told from a first one: gossip retransmits within seconds.
	dedupWindow = 4096
	// originIdle is how long an origin is remembered after its last
	// message (a restarted node is a new origin).
	originIdle = 10 * time.Minute
)

// first reports whether (origin, seq) is new, and remembers it.
func (d *loginDedup) first(origin string, seq uint64, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.origins[origin]
	if o == nil {
		if d.origins == nil {
			d.origins = map[string]*originSeen{}
		}
		for k, other := range d.origins {
			if now.Sub(other.heard) > originIdle {
				delete(d.origins, k)
			}
		}
		o = &originSeen{seen: map[uint64]struct{}{}}
		d.origins[origin] = o
	}
	o.heard = now
	if _, dup := o.seen[seq]; dup || seq <= o.floor {
		return false
	}
	o.seen[seq] = struct{}{}
	o.top = max(o.top, seq)
	if len(o.seen) > 2*dedupWindow && o.top > dedupWindow {
		o.floor = o.top - dedupWindow
		for s := range o.seen {
			if s <= o.floor {
				delete(o.seen, s)
			}
		}
	}
	return true
}

// broadcast is one gossip message; none replaces another.
type broadcast []byte

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcast) Message() []byte                       { return b }
func (b broadcast) Finished()                             {}
