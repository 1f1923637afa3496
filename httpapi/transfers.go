package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/mirror"
	"github.com/udmg/gateway/tasks"
	"github.com/udmg/gateway/transfer"
)

type ruleInput struct {
	Name       *string       `json:"name"`
	Direction  *string       `json:"direction"`
	Path       *string       `json:"path"`
	LocalDir   *string       `json:"localDir"`
	PreTasks   *[]tasks.Task `json:"preTasks"`
	PostTasks  *[]tasks.Task `json:"postTasks"`
	ErrorTasks *[]tasks.Task `json:"errorTasks"`
}

func ruleView(r fsm.Rule) wire.Rule {
	return wire.Rule{Name: r.Name, Direction: r.Direction(), Path: r.Path, LocalDir: r.LocalDir,
		PreTasks: taskViews(r.PreTasks), PostTasks: taskViews(r.PostTasks), ErrorTasks: taskViews(r.ErrorTasks)}
}

func taskViews(list []tasks.Task) []wire.Task {
	out := make([]wire.Task, 0, len(list))
	for _, t := range list {
		out = append(out, wire.Task{Type: t.Type, Args: t.Args})
	}
	return out
}

// validTasks checks a rule's task lists with tasks.Validate, and that
// every secret a task refers to is stored (known); the error names the
// rule, the list, the task's position and the problem.
func validTasks(ru fsm.Rule, known func(secret string) bool) error {
	return eachTask(ru, func(field string, i int, t tasks.Task) error {
		if err := tasks.Validate(t); err != nil {
			return fmt.Errorf("rule %s: %s task %d (%q): %w", ru.Name, field, i+1, t.Type, err)
		}
		for _, name := range tasks.SecretRefs(t) {
			if !known(name) {
				return fmt.Errorf("rule %s: %s task %d (%q): no secret %q (POST /api/task-secrets, udmgctl secrets add)", ru.Name, field, i+1, t.Type, name)
			}
		}
		return nil
	})
}

// eachTask calls fn on every task of the rule, list by list, until one
// fails.
func eachTask(ru fsm.Rule, fn func(field string, i int, t tasks.Task) error) error {
	for _, l := range []struct {
		field string
		list  []tasks.Task
	}{{"preTasks", ru.PreTasks}, {"postTasks", ru.PostTasks}, {"errorTasks", ru.ErrorTasks}} {
		for i, t := range l.list {
			if err := fn(l.field, i, t); err != nil {
				return err
			}
		}
	}
	return nil
}

// taskRunViews shows a transfer's chain.
func taskRunViews(runs []fsm.TaskRun) []wire.TaskRun {
	var out []wire.TaskRun
	for _, r := range runs {
		v := wire.TaskRun{Phase: r.Phase, Position: r.Index + 1, Type: r.Type, State: r.State, Start: timeText(r.Start),
			Stop: timeText(r.Stop), NodeID: r.NodeID, Runs: r.Runs, Error: r.Error, Output: r.Output, Path: r.Path}
		if !r.Stop.IsZero() {
			v.Duration = r.Stop.Sub(r.Start).String()
		}
		out = append(out, v)
	}
	return out
}

func parseDirection(d string) (bool, error) {
	switch d {
	case "send":
		return true, nil
	case "receive":
		return false, nil
	}
	return false, fmt.Errorf("direction: %q is not send or receive", d)
}

// rules are /api/rules/{rule}/{direction}: what a transfer does with a
// file, a name used both ways at most once each.
var rules = resource[fsm.Rule, ruleInput, wire.Rule]{
	noun: "rule", field: "rules", collection: "/api/rules", item: "/api/rules/{rule}/{direction}",
	pick: ofRules, view: ruleView, pathOf: func(ru fsm.Rule) []string { return []string{ru.Name, ru.Direction()} },
	missing: func(v []string) error {
		if _, err := parseDirection(v[1]); err != nil {
			return err
		}
		return fmt.Errorf("no %s rule %q", v[1], v[0])
	},
	complete: func(in ruleInput) bool { return in.Name != nil && in.Direction != nil && in.Path != nil },
	needs:    `a new rule needs "name", "direction" and "path"`,
	create: func(a *API, w http.ResponseWriter, _ *http.Request, in ruleInput) (fsm.Rule, bool) {
		var ru fsm.Rule
		ok := a.fillRule(w, &ru, in)
		return ru, ok
	},
	update: func(a *API, w http.ResponseWriter, ru *fsm.Rule, in ruleInput) bool {
		return fixed(w, "name, direction: a rule cannot be renamed or turned around", same(in.Name, ru.Name), same(in.Direction, ru.Direction())) &&
			a.fillRule(w, ru, in)
	},
	put:        func(m fsm.PutMode, ru fsm.Rule) fsm.Command { return fsm.Command{Op: fsm.OpRulePut, Put: m, Rule: &ru} },
	drop:       fsm.OpRuleDelete,
	mustExist:  true,
	createdLog: func(ru fsm.Rule) []any { return []any{"path", ru.Path} },
}

// fillRule sets in's fields on ru and checks the whole, its local
// directory against the protected paths too.
func (a *API) fillRule(w http.ResponseWriter, ru *fsm.Rule, in ruleInput) bool {
	set(&ru.Name, in.Name)
	set(&ru.LocalDir, in.LocalDir)
	set(&ru.PreTasks, in.PreTasks)
	set(&ru.PostTasks, in.PostTasks)
	set(&ru.ErrorTasks, in.ErrorTasks)
	err := validName("name", ru.Name)
	if err == nil && in.Direction != nil {
		ru.Send, err = parseDirection(*in.Direction)
	}
	if err == nil && in.Path != nil {
		ru.Path, err = cleanRemotePath("path", *in.Path)
	}
	if err == nil {
		err = validLocalDir("localDir", ru.LocalDir)
	}
	if err == nil {
		err = validTasks(*ru, func(name string) bool {
			_, ok := lookup(a.node, ofSecrets, name)
			return ok
		})
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return a.allowedPath(w, "rule "+ru.Name+": localDir", ru.LocalDir, false)
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func transferView(t fsm.Transfer) wire.Transfer {
	v := wire.Transfer{ID: t.ID, IsServer: t.IsServer, Direction: fsm.Rule{Send: t.IsSend}.Direction(), Protocol: t.Protocol, Rule: t.Rule,
		Account: t.Account, LocalPath: t.LocalPath, RemotePath: t.RemotePath, Filesize: t.Filesize, Progress: t.Progress,
		Status: t.Status, Step: t.Step, ErrorCode: t.ErrorCode, ErrorDetails: t.ErrorDetails, Start: timeText(t.Start),
		Stop: timeText(t.Stop), Attempts: t.Attempts, MaxAttempts: t.MaxAttempts, NextRetry: timeText(t.NextRetry),
		Checkpoints: t.Checkpoints, NodeID: t.NodeID, Tasks: taskRunViews(t.Tasks), Parent: t.Parent}
	if t.IsServer {
		v.Server = t.Agent
	} else {
		v.Partner = t.Agent
	}
	if t.Filesize > 0 {
		v.Percent = float64(int(1000*float64(t.Progress)/float64(t.Filesize))) / 10
	}
	if !t.Stop.IsZero() {
		v.Duration = t.Stop.Sub(t.Start).String()
	}
	return v
}

var transferStatuses = []string{fsm.StatusPlanned, fsm.StatusRunning, fsm.StatusPaused, fsm.StatusInterrupted, fsm.StatusError, fsm.StatusDone, fsm.StatusCancelled}

// statusParam is the status query parameter of the transfer lists: a
// transfer status, or "" for any; otherwise it answers 400.
func statusParam(w http.ResponseWriter, q url.Values) (string, bool) {
	status := q.Get("status")
	if status != "" && !slices.Contains(transferStatuses, status) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("status: %q is not one of %v", status, transferStatuses))
		return "", false
	}
	return status, true
}

func (a *API) listTransfers(w http.ResponseWriter, r *http.Request, _ *principal) {
	q := r.URL.Query()
	status, ok := statusParam(w, q)
	if !ok {
		return
	}
	ts := copyOf(a.node, ofTransfers)
	ids := slices.Sorted(maps.Keys(ts))
	switch s := q.Get("sort"); s {
	case "", "id+", "start+":
	case "id-", "start-":
		slices.Reverse(ids)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("sort: %q is not id+, id-, start+ or start-", s))
		return
	}
	var out []wire.Transfer
	for _, id := range ids {
		if status == "" || ts[id].Status == status {
			out = append(out, transferView(ts[id]))
		}
	}
	if out, ok := page(w, r, out); ok {
		writeJSON(w, http.StatusOK, map[string]any{"transfers": out})
	}
}

func (a *API) transfer(w http.ResponseWriter, r *http.Request) (fsm.Transfer, bool) {
	s := r.PathValue("id")
	id, err := strconv.ParseUint(s, 10, 64)
	t, ok := lookup(a.node, ofTransfers, id)
	if err != nil || !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no live transfer %q (finished ones are in /api/history)", s))
		return fsm.Transfer{}, false
	}
	return t, true
}

func (a *API) getTransfer(w http.ResponseWriter, r *http.Request, _ *principal) {
	if t, ok := a.transfer(w, r); ok {
		writeJSON(w, http.StatusOK, transferView(t))
	}
}

type transferInput struct {
	Rule        *string  `json:"rule"`
	Direction   *string  `json:"direction"`
	Partner     *string  `json:"partner"`
	Account     *string  `json:"account"`
	File        *string  `json:"file"`
	MaxAttempts *int     `json:"maxAttempts"`
	RetryDelay  *string  `json:"retryDelay"`
	RetryFactor *float64 `json:"retryFactor"`
}

// createTransfer plans a client-mode transfer: the rule's direction says
// whether file goes from <localDir>/file to the partner's <path>/file or back.
func (a *API) createTransfer(w http.ResponseWriter, r *http.Request, p *principal) {
	var in transferInput
	if !decodeJSON(w, r, &in) {
		return
	}
	if in.Rule == nil || in.Partner == nil || in.Account == nil || in.File == nil {
		writeError(w, http.StatusBadRequest, `a transfer needs "rule", "partner", "account" and "file"`)
		return
	}
	ru, partner, ok := a.transferObjects(w, *in.Rule, in.Direction, *in.Partner, *in.Account)
	if !ok {
		return
	}
	if !filepath.IsLocal(*in.File) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("file: %q must be a relative path without '..'", *in.File))
		return
	}
	f := filepath.ToSlash(*in.File)
	t := transfer.Planned(ru, partner, *in.Account, path.Join(ru.LocalDir, f), path.Join(ru.Path, f), a.now())
	set(&t.MaxAttempts, in.MaxAttempts)
	set(&t.RetryFactor, in.RetryFactor)
	if in.RetryDelay != nil {
		d, err := time.ParseDuration(*in.RetryDelay)
		if err != nil || d < 0 || d > 24*time.Hour {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("retryDelay: %q is not a duration up to 24h such as \"2s\"", *in.RetryDelay))
			return
		}
		t.RetryDelay = d
	}
	if t.MaxAttempts < 1 || t.MaxAttempts > 100 || t.RetryFactor < 1 || t.RetryFactor > 10 {
		writeError(w, http.StatusBadRequest, "maxAttempts, retryFactor: want 1 to 100 attempts and a factor from 1 to 10")
		return
	}
	if !a.allowedPath(w, "transfer of rule "+ru.Name+": local file", t.LocalPath, false) {
		return
	}
	id, err := transfer.AddTransfer(a.mft.IDs, a.node.Read, func(c fsm.Command) error { c.At = a.now(); return a.node.Apply(c) }, t, 0)
	if !a.committed(w, "create transfer", err) {
		return
	}
	t.ID = id
	a.log.Info("transfer planned", "id", id, "rule", ru.Name, "direction", ru.Direction(), "partner", partner.Name, "file", *in.File, "by", p.user)
	w.Header().Set("Location", fmt.Sprintf("/api/transfers/%d", id))
	writeJSON(w, http.StatusCreated, transferView(t))
}

// transferObjects finds, answering 400 naming the field when one is
// missing, the rule (in direction, when given; needed when it exists both
// ways), the partner and the remote account of client-mode transfers.
func (a *API) transferObjects(w http.ResponseWriter, rule string, direction *string, partnerName, account string) (fsm.Rule, fsm.Partner, bool) {
	var ru fsm.Rule
	var found int
	for _, send := range []bool{true, false} {
		if x, ok := lookup(a.node, ofRules, fsm.RuleKey(rule, send)); ok && (direction == nil || *direction == x.Direction()) {
			ru, found = x, found+1
		}
	}
	switch {
	case found == 0:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("rule: no rule %q", rule))
		return ru, fsm.Partner{}, false
	case found > 1:
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`direction: rule %q exists both ways; say "send" or "receive"`, rule))
		return ru, fsm.Partner{}, false
	}
	partner, ok := lookup(a.node, ofPartners, partnerName)
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("partner: no partner %q", partnerName))
		return ru, partner, false
	}
	if _, ok := lookup(a.node, ofRemoteAccounts, fsm.AccountKey(partner.Name, account)); !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("account: no account %q at partner %q", account, partner.Name))
		return ru, partner, false
	}
	return ru, partner, true
}

// transferAction answers PUT /api/transfers/{id}/pause|resume|cancel|retry
// with 202: the ACTIVE node acts on it within its poll period.
func (a *API) transferAction(action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) {
		t, ok := a.transfer(w, r)
		if !ok || !a.apply(w, action+" transfer", fsm.Command{Op: fsm.OpTransferAction, Change: &fsm.TransferChange{ID: t.ID, Action: action}}) {
			return
		}
		a.log.Info("transfer "+action, "id", t.ID, "by", p.user)
		t, _ = lookup(a.node, ofTransfers, t.ID)
		writeJSON(w, http.StatusAccepted, transferView(t))
	}
}

// historyQuery reads the history's filters from the query parameters,
// answering 400 naming the first bad one: status is a transfer status;
// rule, partner and account are exact names, "" for any; since and until
// are RFC3339 times bounding the start, until not before since.
func historyQuery(w http.ResponseWriter, q url.Values) (mirror.HistoryQuery, bool) {
	status, ok := statusParam(w, q)
	hq := mirror.HistoryQuery{Status: status, Rule: q.Get("rule"), Partner: q.Get("partner"), Account: q.Get("account")}
	if !ok {
		return hq, false
	}
	for _, b := range []struct {
		name string
		to   *time.Time
	}{{"since", &hq.Since}, {"until", &hq.Until}} {
		s := q.Get(b.name)
		if s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: %q is not an RFC3339 time", b.name, s))
			return hq, false
		}
		*b.to = t
	}
	if !hq.Since.IsZero() && !hq.Until.IsZero() && hq.Until.Before(hq.Since) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("until: %s is before since %s", q.Get("until"), q.Get("since")))
		return hq, false
	}
	return hq, true
}

func (a *API) listHistory(w http.ResponseWriter, r *http.Request, _ *principal) {
	if a.mft.History == nil {
		writeError(w, http.StatusServiceUnavailable, "no history table configured")
		return
	}
	limit, offset, ok := pageParams(w, r)
	if !ok {
		return
	}
	hq, ok := historyQuery(w, r.URL.Query())
	if !ok {
		return
	}
	hq.Limit, hq.Offset = limit, offset
	ctx, cancel := context.WithTimeout(r.Context(), tableTimeout)
	defer cancel()
	rows, err := a.mft.History.History(ctx, hq)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "history table unreachable: "+err.Error())
		return
	}
	out := []wire.HistoryItem{}
	for _, h := range rows {
		item := wire.HistoryItem{ID: h.ID, IsServer: h.IsServer, Direction: fsm.Rule{Send: h.IsSend}.Direction(), Protocol: h.Protocol,
			Rule: h.Rule, Agent: h.Agent, Account: h.Account, LocalPath: h.LocalPath, RemotePath: h.RemotePath, Filesize: h.Filesize,
			Progress: h.Progress, Status: h.Status, Step: h.Step, ErrorCode: h.ErrorCode, ErrorDetails: h.ErrorDetails,
			Start: timeText(h.Start), Stop: timeText(h.Stop), NodeID: h.NodeID}
		if h.Tasks != "" {
			var runs []fsm.TaskRun
			if err := json.Unmarshal([]byte(h.Tasks), &runs); err == nil {
				item.Tasks = taskRunViews(runs)
			}
		}
		if !h.Stop.IsZero() {
			item.Duration = h.Stop.Sub(h.Start).String()
		}
		out = append(out, item)
	}
	writeJSON(w, http.StatusOK, map[string]any{"history": out})
}
