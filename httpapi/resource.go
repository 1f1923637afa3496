package httpapi

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/udmg/gateway/fsm"
)

// A resource is one kind of object of the replicated state that the API
// lists, shows, creates, changes and deletes: servers and their accounts,
// partners and theirs, rules, keys, schedules, users. Each kind declares
// here what is its own (its paths, its map, its body and checks, its
// command, its view without secrets); the handlers below are the one shape
// all share: decode the body, find the object (404), propose the command
// (the guard has sent a write on a follower to the leader), answer a failed
// commit (API.committed: 404, 409, 503) and show the object.
//
// V is the state's object, In the request body, O the view answered.
type resource[V, In, O any] struct {
	// noun names the kind in answers and logs: "no server", "create
	// server", "server created".
	noun string
	// field is the list answer's one field: {"servers": [...]}.
	field string
	// sortBy is the sort parameter's key: sort=name+ or name- ("name" when empty).
	sortBy string
	// collection and item are the path patterns: "/api/servers" and
	// "/api/servers/{server}". The state's key of an object is the values
	// of item's wildcards joined by "/" (fsm.AccountKey, fsm.RuleKey), and
	// a delete command has them as Name and Sub.
	collection, item string
	pick             func(*fsm.State) map[string]V
	// pathOf is the values of item's wildcards for v, for its Location
	// and its log lines.
	pathOf func(v V) []string
	// missing is the 404 error for the item's wildcard values (nil: no
	// <noun> "<first value>").
	missing func(vals []string) error
	view    func(V) O
	// parent, for objects under another (a server's accounts), is that
	// one's kind: it must exist (404) for a list or a create, and its name
	// is the first path value of its children.
	parent interface {
		exists(a *API, w http.ResponseWriter, r *http.Request) bool
	}
	// complete tells whether a create's body has what a new object
	// needs; needs is the 400 error when it has not.
	complete func(In) bool
	needs    string
	// create makes the new object from the body, answering (400) when it
	// cannot.
	create func(a *API, w http.ResponseWriter, r *http.Request, in In) (V, bool)
	// update changes v as the body says (PUT and PATCH alike), answering
	// when it cannot; nil with change nil: the kind has neither.
	update func(a *API, w http.ResponseWriter, v *V, in In) bool
	// change, when set, answers PUT (replace) and PATCH itself instead.
	change func(a *API, w http.ResponseWriter, r *http.Request, p *principal, replace bool)
	// put is the command that creates or updates v.
	put func(mode fsm.PutMode, v V) fsm.Command
	// drop is the op that deletes an object; with mustExist the object is
	// looked up first (404 with missing) rather than left to the machine.
	drop      fsm.Op
	mustExist bool
	// vetDelete, when set, checks a delete first; release, called once
	// the delete is answered, ends what it holds (a lock).
	vetDelete func(a *API, w http.ResponseWriter, r *http.Request) (release func(), ok bool)
	// createdLog and changedLog are what the log line says of a created
	// object or of a change beyond the object's path values.
	createdLog func(V) []any
	changedLog func(In) []any
	// reread shows an object after a write as the machine stored it (a
	// schedule's created time and runs, which the machine keeps).
	reread bool
	// self lets a user reach their own item with GET, PUT and PATCH (rule.self).
	self bool
	// switches are the PUT <item>/<action> endpoints that turn enabled on
	// ("enable", "start") or off (any other).
	switches []string
	enabled  func(*V) *bool
}

// routes registers res's endpoints in domain: GET and POST on the
// collection; GET, PUT, PATCH, DELETE and the switches on the item.
func routes[V, In, O any](a *API, domain string, res *resource[V, In, O]) {
	read := rule{domain: domain, need: permRead}
	write := rule{domain: domain, need: permWrite}
	a.handle("GET", res.collection, read, res.list(a))
	a.handle("POST", res.collection, write, res.created(a))
	read.self, write.self = res.self, res.self
	a.handle("GET", res.item, read, res.get(a))
	switch {
	case res.change != nil:
		for _, m := range []string{"PUT", "PATCH"} {
			replace := m == "PUT"
			a.handle(m, res.item, write, func(w http.ResponseWriter, r *http.Request, p *principal) { res.change(a, w, r, p, replace) })
		}
	case res.update != nil:
		a.handle("PUT", res.item, write, res.updated(a))
		a.handle("PATCH", res.item, write, res.updated(a))
	}
	a.handle("DELETE", res.item, rule{domain: domain, need: permDelete}, res.deleted(a))
	write.self = false
	for _, action := range res.switches {
		a.handle("PUT", res.item+"/"+action, write, res.switched(a, action == "enable" || action == "start"))
	}
}

// wildcards are the names of item's {wildcards}, in order.
func (res *resource[V, In, O]) wildcards() []string {
	var names []string
	for rest := res.item; ; {
		_, after, ok := strings.Cut(rest, "{")
		if !ok {
			return names
		}
		var name string
		name, rest, _ = strings.Cut(after, "}")
		names = append(names, name)
	}
}

// pathValues are the request's values of item's wildcards.
func (res *resource[V, In, O]) pathValues(r *http.Request) []string {
	var vals []string
	for _, name := range res.wildcards() {
		vals = append(vals, r.PathValue(name))
	}
	return vals
}

// attrs are the log attributes naming an object by its path values,
// followed by more.
func (res *resource[V, In, O]) attrs(vals []string, more ...any) []any {
	var out []any
	for i, name := range res.wildcards() {
		out = append(out, name, vals[i])
	}
	return append(out, more...)
}

// location is the item path of v.
func (res *resource[V, In, O]) location(v V) string {
	loc, vals := res.item, res.pathOf(v)
	for i, name := range res.wildcards() {
		loc = strings.Replace(loc, "{"+name+"}", url.PathEscape(vals[i]), 1)
	}
	return loc
}

// find is the object the request's path names; it answers 404 when none.
func (res *resource[V, In, O]) find(a *API, w http.ResponseWriter, r *http.Request) (V, bool) {
	vals := res.pathValues(r)
	v, ok := lookup(a.node, res.pick, strings.Join(vals, "/"))
	if !ok {
		err := fmt.Errorf("no %s %q", res.noun, vals[0])
		if res.missing != nil {
			err = res.missing(vals)
		}
		writeError(w, http.StatusNotFound, err.Error())
	}
	return v, ok
}

func (res *resource[V, In, O]) exists(a *API, w http.ResponseWriter, r *http.Request) bool {
	_, ok := res.find(a, w, r)
	return ok
}

// stored is v as shown after a write.
func (res *resource[V, In, O]) stored(a *API, v V) V {
	if res.reread {
		v, _ = lookup(a.node, res.pick, strings.Join(res.pathOf(v), "/"))
	}
	return v
}

func (res *resource[V, In, O]) list(a *API) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ *principal) {
		var m map[string]V
		if res.parent == nil {
			m = copyOf(a.node, res.pick)
		} else {
			if !res.parent.exists(a, w, r) {
				return
			}
			name := res.pathValues(r)[0]
			m = filtered(a.node, res.pick, func(v V) bool { return res.pathOf(v)[0] == name })
		}
		names, ok := sortedKeys(w, r, cmp.Or(res.sortBy, "name"), m)
		if !ok {
			return
		}
		var out []O
		for _, n := range names {
			out = append(out, res.view(m[n]))
		}
		if out, ok := page(w, r, out); ok {
			writeJSON(w, http.StatusOK, map[string]any{res.field: out})
		}
	}
}

// sortedKeys lists m's keys in order, reversed for sort=<by>-.
func sortedKeys[V any](w http.ResponseWriter, r *http.Request, by string, m map[string]V) ([]string, bool) {
	keys := slices.Sorted(maps.Keys(m))
	switch s := r.URL.Query().Get("sort"); s {
	case "", by + "+":
	case by + "-":
		slices.Reverse(keys)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("sort: %q is not %s+ or %s-", s, by, by))
		return nil, false
	}
	return keys, true
}

func (res *resource[V, In, O]) get(a *API) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ *principal) {
		if v, ok := res.find(a, w, r); ok {
			writeJSON(w, http.StatusOK, res.view(v))
		}
	}
}

func (res *resource[V, In, O]) created(a *API) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) {
		var in In
		if !decodeJSON(w, r, &in) {
			return
		}
		if res.parent != nil && !res.parent.exists(a, w, r) {
			return
		}
		if res.complete != nil && !res.complete(in) {
			writeError(w, http.StatusBadRequest, res.needs)
			return
		}
		v, ok := res.create(a, w, r, in)
		if !ok || !a.apply(w, "create "+res.noun, res.put(fsm.PutCreate, v)) {
			return
		}
		a.log.Info(res.noun+" created", res.attrs(res.pathOf(v), append(said(res.createdLog, v), "by", p.user)...)...)
		v = res.stored(a, v)
		w.Header().Set("Location", res.location(v))
		writeJSON(w, http.StatusCreated, res.view(v))
	}
}

func (res *resource[V, In, O]) updated(a *API) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) {
		var in In
		if !decodeJSON(w, r, &in) {
			return
		}
		v, ok := res.find(a, w, r)
		if !ok || !res.update(a, w, &v, in) || !a.apply(w, "update "+res.noun, res.put(fsm.PutUpdate, v)) {
			return
		}
		a.log.Info(res.noun+" changed", res.attrs(res.pathValues(r), append(said(res.changedLog, in), "by", p.user)...)...)
		writeJSON(w, http.StatusOK, res.view(res.stored(a, v)))
	}
}

func (res *resource[V, In, O]) deleted(a *API) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) {
		if res.vetDelete != nil {
			release, ok := res.vetDelete(a, w, r)
			if !ok {
				return
			}
			defer release()
		}
		if res.mustExist {
			if _, ok := res.find(a, w, r); !ok {
				return
			}
		}
		vals := res.pathValues(r)
		c := fsm.Command{Op: res.drop, Name: vals[0]}
		if len(vals) > 1 {
			c.Sub = vals[1]
		}
		if !a.apply(w, "delete "+res.noun, c) {
			return
		}
		a.log.Info(res.noun+" deleted", res.attrs(vals, "by", p.user)...)
		w.WriteHeader(http.StatusNoContent)
	}
}

// switched answers PUT <item>/enable (on) and the like with 202: the
// ACTIVE node acts on it within its poll period.
func (res *resource[V, In, O]) switched(a *API, on bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) {
		v, ok := res.find(a, w, r)
		if !ok {
			return
		}
		*res.enabled(&v) = on
		if !a.apply(w, "switch "+res.noun, res.put(fsm.PutUpdate, v)) {
			return
		}
		a.log.Info(res.noun+" switched", res.attrs(res.pathValues(r), "enabled", on, "by", p.user)...)
		writeJSON(w, http.StatusAccepted, res.view(res.stored(a, v)))
	}
}

// said is what log says of x (nothing when log is nil).
func said[X any](log func(X) []any, x X) []any {
	if log == nil {
		return nil
	}
	return log(x)
}

// same tells whether a field given (in non-nil) keeps the object's value.
func same[T comparable](in *T, cur T) bool { return in == nil || *in == cur }

// fixed answers 400 msg unless each field that cannot change keeps its
// value (same).
func fixed(w http.ResponseWriter, msg string, kept ...bool) bool {
	if slices.Contains(kept, false) {
		writeError(w, http.StatusBadRequest, msg)
		return false
	}
	return true
}
