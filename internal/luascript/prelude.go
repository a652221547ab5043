package luascript

import (
	"fmt"
	"sort"
	"strings"
)

// Prelude is what Go tells the scripts ("--@include prelude"), given by
// the caller as data; Text renders it as Lua.
type Prelude struct {
	// Cluster makes PUBLISH 'SPUBLISH' (sharded pub/sub keeps messages on
	// the slot's node) instead of 'PUBLISH'.
	Cluster bool
	// MaxCount is MAX_COUNT, the most a flow's counters count to.
	MaxCount int64
	// Codes are the refusal codes, ERR.<code> (rendered sorted).
	Codes []string
	// Statuses are the flow statuses, in order: S_<NAME>, STATUS[name]
	// and ALLOWED[name].
	Statuses []Status
	// Record is RECORD, the record fields of a flow hash in reply order.
	Record []string
}

// Status is what the prelude says of one flow status.
type Status struct {
	Name string
	// Index is STATUS[name].index: the position (in KEYS, from 1) of the
	// status's index key in a flow's key set.
	Index                     int
	Terminal, Runnable, Waits bool
	// From are the statuses a flow may move to this one from:
	// ALLOWED[name][from] is true.
	From []string
}

// Text renders the prelude: PUBLISH, MAX_COUNT, ERR, S_<STATUS>, STATUS
// (per status: index, terminal, runnable, waits), RECORD and
// ALLOWED[to][from].
func (p Prelude) Text() string {
	var b strings.Builder
	b.WriteString("-- prelude: generated from Go (scripts.go, status.go): do not edit\n")
	if p.Cluster {
		b.WriteString("local PUBLISH = 'SPUBLISH'\n")
	} else {
		b.WriteString("local PUBLISH = 'PUBLISH'\n")
	}
	fmt.Fprintf(&b, "local MAX_COUNT = %d\n", p.MaxCount)
	b.WriteString("local ERR = {")
	codes := append([]string(nil), p.Codes...)
	sort.Strings(codes)
	for _, c := range codes {
		fmt.Fprintf(&b, "%s=%q,", c, c)
	}
	b.WriteString("}\n")
	for _, st := range p.Statuses {
		fmt.Fprintf(&b, "local S_%s = %q\n", strings.ToUpper(st.Name), st.Name)
	}
	b.WriteString("local STATUS = {")
	for _, st := range p.Statuses {
		fmt.Fprintf(&b, "[%q]={index=%d,terminal=%t,runnable=%t,waits=%t},", st.Name, st.Index, st.Terminal, st.Runnable, st.Waits)
	}
	b.WriteString("}\nlocal RECORD = {")
	for _, name := range p.Record {
		fmt.Fprintf(&b, "%q,", name)
	}
	b.WriteString("}\nlocal ALLOWED = {")
	for _, st := range p.Statuses {
		fmt.Fprintf(&b, "[%q]={", st.Name)
		for _, from := range st.From {
			fmt.Fprintf(&b, "[%q]=true,", from)
		}
		b.WriteString("},")
	}
	b.WriteString("}\n")
	return b.String()
}
