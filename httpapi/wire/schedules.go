package wire

// Schedule is a schedule as the API shows it: what it runs and its runs.
type Schedule struct {
	Name string `json:"name"`
	// Kind is at, cron, watch or poll.
	Kind      string `json:"kind"`
	Rule      string `json:"rule"`
	Direction string `json:"direction"`
	Partner   string `json:"partner"`
	Account   string `json:"account"`
	At        string `json:"at,omitempty"`
	Cron      string `json:"cron,omitempty"`
	File      string `json:"file,omitempty"`
	Dir       string `json:"dir,omitempty"`
	After     string `json:"after,omitempty"`
	Interval  string `json:"interval,omitempty"`
	Settle    string `json:"settle,omitempty"`
	Enabled   bool   `json:"enabled"`
	Created   string `json:"created"`
	// LastRun is the last slot run (at, cron); NextRun the next one due.
	LastRun string        `json:"lastRun,omitempty"`
	NextRun string        `json:"nextRun,omitempty"`
	Runs    []ScheduleRun `json:"runs"`
}

// ScheduleRun is one run of a schedule: its slot (at, cron) or file
// (watch, poll) and the transfer it created.
type ScheduleRun struct {
	Key        string `json:"key"`
	TransferID uint64 `json:"transferId"`
	At         string `json:"at"`
	AfterDone  bool   `json:"afterDone,omitempty"`
}

// ScheduleList answers GET /api/schedules.
type ScheduleList struct {
	Schedules []Schedule `json:"schedules"`
}
