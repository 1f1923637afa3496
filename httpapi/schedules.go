package httpapi

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/transfer"
)

type scheduleInput struct {
	Name      *string `json:"name"`
	Kind      *string `json:"kind"`
	Rule      *string `json:"rule"`
	Direction *string `json:"direction"`
	Partner   *string `json:"partner"`
	Account   *string `json:"account"`
	At        *string `json:"at"`
	Cron      *string `json:"cron"`
	File      *string `json:"file"`
	Dir       *string `json:"dir"`
	After     *string `json:"after"`
	Interval  *string `json:"interval"`
	Settle    *string `json:"settle"`
	Enabled   *bool   `json:"enabled"`
}

var scheduleKinds = []string{fsm.ScheduleAt, fsm.ScheduleCron, fsm.ScheduleWatch, fsm.SchedulePoll}

func durationText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func scheduleView(sc fsm.Schedule) wire.Schedule {
	v := wire.Schedule{Name: sc.Name, Kind: sc.Kind, Rule: sc.Rule, Direction: fsm.Rule{Send: sc.Send}.Direction(), Partner: sc.Partner,
		Account: sc.Account, At: timeText(sc.At), Cron: sc.Cron, File: sc.File, Dir: sc.Dir, After: sc.After,
		Interval: durationText(sc.Interval), Settle: durationText(sc.Settle), Enabled: sc.Enabled, Created: timeText(sc.Created),
		LastRun: timeText(sc.LastRun), Runs: []wire.ScheduleRun{}}
	switch sc.Kind {
	case fsm.ScheduleAt:
		if sc.At.After(sc.LastRun) {
			v.NextRun = timeText(sc.At)
		}
	case fsm.ScheduleCron:
		if spec, err := transfer.ParseCron(sc.Cron); err == nil {
			v.NextRun = timeText(spec.Next(cmp.Or(sc.LastRun, sc.Created).UTC()))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(sc.Runs)) {
		r := sc.Runs[k]
		v.Runs = append(v.Runs, wire.ScheduleRun{Key: r.Key, TransferID: r.TransferID, At: timeText(r.At), AfterDone: r.AfterDone})
	}
	return v
}

// putSchedule is the put of sc without its run state, which the machine
// keeps (and which would only weigh on the log).
func putSchedule(mode fsm.PutMode, sc fsm.Schedule) fsm.Command {
	sc.Created, sc.LastRun, sc.Runs = time.Time{}, time.Time{}, nil
	return fsm.Command{Op: fsm.OpSchedulePut, Put: mode, Schedule: &sc}
}

// schedules are /api/schedules/{schedule}: they start client-mode
// transfers on the ACTIVE node (fsm.Schedule, transfer's scheduler), which
// acts on PUT …/enable|disable within its scheduler's tick.
var schedules = resource[fsm.Schedule, scheduleInput, wire.Schedule]{
	noun: "schedule", field: "schedules", collection: "/api/schedules", item: "/api/schedules/{schedule}",
	pick: ofSchedules, view: scheduleView, pathOf: func(sc fsm.Schedule) []string { return []string{sc.Name} },
	complete: func(in scheduleInput) bool {
		return in.Name != nil && in.Kind != nil && in.Rule != nil && in.Partner != nil && in.Account != nil
	},
	needs: `a new schedule needs "name", "kind", "rule", "partner" and "account"`,
	create: func(a *API, w http.ResponseWriter, _ *http.Request, in scheduleInput) (fsm.Schedule, bool) {
		sc := fsm.Schedule{Enabled: true}
		ok := a.fillSchedule(w, &sc, in)
		return sc, ok
	},
	update: func(a *API, w http.ResponseWriter, sc *fsm.Schedule, in scheduleInput) bool {
		return fixed(w, "name, kind: a schedule cannot be renamed or change its kind", same(in.Name, sc.Name), same(in.Kind, sc.Kind)) &&
			a.fillSchedule(w, sc, in)
	},
	put:        putSchedule,
	drop:       fsm.OpScheduleDelete,
	createdLog: func(sc fsm.Schedule) []any { return []any{"kind", sc.Kind, "rule", sc.Rule, "partner", sc.Partner} },
	reread:     true,
	switches:   []string{"enable", "disable"},
	enabled:    func(sc *fsm.Schedule) *bool { return &sc.Enabled },
}

// fillSchedule sets in's fields on sc and checks the whole, answering 400
// naming the field at fault.
func (a *API) fillSchedule(w http.ResponseWriter, sc *fsm.Schedule, in scheduleInput) bool {
	set(&sc.Name, in.Name)
	set(&sc.Kind, in.Kind)
	set(&sc.Partner, in.Partner)
	set(&sc.Account, in.Account)
	set(&sc.Cron, in.Cron)
	set(&sc.File, in.File)
	set(&sc.Dir, in.Dir)
	set(&sc.After, in.After)
	set(&sc.Enabled, in.Enabled)
	fail := func(format string, args ...any) bool {
		writeError(w, http.StatusBadRequest, fmt.Sprintf(format, args...))
		return false
	}
	if err := validName("name", sc.Name); err != nil {
		return fail("%v", err)
	}
	if !slices.Contains(scheduleKinds, sc.Kind) {
		return fail("kind: %q is not one of %v", sc.Kind, scheduleKinds)
	}
	if in.At != nil {
		at, err := time.Parse(time.RFC3339, *in.At)
		if err != nil {
			return fail("at: %q is not an RFC 3339 time such as \"2026-12-01T14:00:00Z\"", *in.At)
		}
		sc.At = at.UTC()
	}
	for _, d := range []struct {
		field string
		in    *string
		dst   *time.Duration
	}{{"interval", in.Interval, &sc.Interval}, {"settle", in.Settle, &sc.Settle}} {
		if d.in == nil {
			continue
		}
		v, err := time.ParseDuration(*d.in)
		if *d.in == "" {
			v, err = 0, nil
		}
		if err != nil || v < 0 || v > 24*time.Hour {
			return fail("%s: %q is not a duration up to 24h such as \"10s\"", d.field, *d.in)
		}
		*d.dst = v
	}
	// The rule, partner and account of its transfers.
	ruleName := sc.Rule
	set(&ruleName, in.Rule)
	direction := in.Direction
	if direction == nil && in.Rule == nil {
		d := fsm.Rule{Send: sc.Send}.Direction()
		direction = &d
	}
	ru, _, ok := a.transferObjects(w, ruleName, direction, sc.Partner, sc.Account)
	if !ok {
		return false
	}
	sc.Rule, sc.Send = ru.Name, ru.Send
	// What each kind needs, and nothing the others need.
	kindOnly := map[string]bool{"at": !sc.At.IsZero(), "cron": sc.Cron != "", "file": sc.File != "", "dir": sc.Dir != "", "after": sc.After != "",
		"interval": sc.Interval != 0, "settle": sc.Settle != 0}
	needs := map[string][]string{fsm.ScheduleAt: {"at", "file"}, fsm.ScheduleCron: {"cron", "file"}, fsm.ScheduleWatch: {"dir"}, fsm.SchedulePoll: {"dir"}}[sc.Kind]
	allowed := map[string][]string{fsm.ScheduleAt: {"at", "file"}, fsm.ScheduleCron: {"cron", "file"},
		fsm.ScheduleWatch: {"dir", "interval", "settle"}, fsm.SchedulePoll: {"dir", "after", "interval", "settle"}}[sc.Kind]
	for _, f := range slices.Sorted(maps.Keys(kindOnly)) {
		switch {
		case slices.Contains(needs, f) && !kindOnly[f]:
			return fail("%s: a %s schedule needs it", f, sc.Kind)
		case !slices.Contains(allowed, f) && kindOnly[f]:
			return fail("%s: not for a %s schedule (it takes %s)", f, sc.Kind, strings.Join(allowed, ", "))
		}
	}
	switch sc.Kind {
	case fsm.ScheduleCron:
		if _, err := transfer.ParseCron(sc.Cron); err != nil {
			return fail("cron: %q does not parse: %v (five fields from minute to day of week, six with seconds first, or a descriptor such as @hourly or @every 2s)", sc.Cron, err)
		}
	case fsm.ScheduleWatch:
		if !sc.Send {
			return fail("rule: a watch sends the files it finds: %q is a receive rule", sc.Rule)
		}
		if err := validLocalDir("dir", sc.Dir); err != nil {
			return fail("%v", err)
		}
		if !a.allowedPath(w, "schedule "+sc.Name+": dir", sc.Dir, false) {
			return false
		}
	case fsm.SchedulePoll:
		if sc.Send {
			return fail("rule: a poll fetches the files it finds: %q is a send rule", sc.Rule)
		}
		dir, err := cleanRemotePath("dir", sc.Dir)
		if err != nil {
			return fail("%v", err)
		}
		sc.Dir = dir
		if moveTo, ok := strings.CutPrefix(sc.After, "move:"); ok {
			to, err := cleanRemotePath("after", moveTo)
			if err != nil {
				return fail("%v (after: move:<dir at the partner>)", err)
			}
			sc.After = "move:" + to
		} else if sc.After != "" && sc.After != "delete" {
			return fail("after: %q is not delete or move:<dir at the partner>", sc.After)
		}
	}
	if sc.File != "" {
		if !filepath.IsLocal(sc.File) {
			return fail("file: %q must be a relative path without '..'", sc.File)
		}
		if sc.Send && !a.allowedPath(w, "schedule "+sc.Name+": file", path.Join(ru.LocalDir, sc.File), false) {
			return false
		}
	}
	return true
}
