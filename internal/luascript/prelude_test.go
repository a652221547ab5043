package luascript

import "testing"

func TestPreludeText(t *testing.T) {
	p := Prelude{
		Cluster:  true,
		MaxCount: 99,
		Codes:    []string{"STALE", "NOTFOUND"},
		Statuses: []Status{
			{Name: "pending", Index: 4, Runnable: true},
			{Name: "done", Index: 5, Terminal: true, From: []string{"pending"}},
		},
		Record: []string{"status", "rev"},
	}
	want := `-- prelude: generated from Go (scripts.go, status.go): do not edit
local PUBLISH = 'SPUBLISH'
local MAX_COUNT = 99
local ERR = {NOTFOUND="NOTFOUND",STALE="STALE",}
local S_PENDING = "pending"
local S_DONE = "done"
local STATUS = {["pending"]={index=4,terminal=false,runnable=true,waits=false},["done"]={index=5,terminal=true,runnable=false,waits=false},}
local RECORD = {"status","rev",}
local ALLOWED = {["pending"]={},["done"]={["pending"]=true,},}
`
	if got := p.Text(); got != want {
		t.Errorf("prelude:\n%s\nwant:\n%s", got, want)
	}
	if err := checkFile(preludeName, p.Text(), true); err != nil {
		t.Errorf("the prelude breaks a rule: %v", err)
	}
	if p.Codes[0] != "STALE" {
		t.Error("Text sorted the caller's codes")
	}
}
