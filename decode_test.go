package taskflow

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestDecodeEventReadsBothForms: an audit entry reads the same whether
// it was kept in the compact array form or in the object form of flow
// spaces written before; a payload keeps its bytes, and an entry that is
// neither is invalid data.
func TestDecodeEventReadsBothForms(t *testing.T) {
	id := uuid.New()
	at := time.UnixMilli(1733400000123).UTC()
	cases := []struct {
		name, compact, object string
		want                  FlowEvent
	}{
		{"no lease",
			`["created",0,1733400000123,{"controller_id":"c","goal":"g"}]`,
			`{"kind":"created","rev":0,"at":1733400000123,"payload":{"controller_id":"c","goal":"g"}}`,
			FlowEvent{Kind: EventCreated, Payload: json.RawMessage(`{"controller_id":"c","goal":"g"}`)}},
		{"lease",
			`["finished",2,1733400000123,{"final_state":null},"ebb56e7de945f5c20b60adcb"]`,
			`{"kind":"finished","rev":2,"at":1733400000123,"lease":"ebb56e7de945f5c20b60adcb","payload":{"final_state":null}}`,
			FlowEvent{Kind: EventFinished, Revision: 2, Lease: "ebb56e7de945f5c20b60adcb", Payload: json.RawMessage(`{"final_state":null}`)}},
		{"payload a string, odd kind",
			`["a \"kind\" ]",7,1733400000123,"x\"]"]`,
			`{"kind":"a \"kind\" ]","rev":7,"at":1733400000123,"payload":"x\"]"}`,
			FlowEvent{Kind: `a "kind" ]`, Revision: 7, Payload: json.RawMessage(`"x\"]"`)}},
		{"nested arrays",
			`["state_updated",3,1733400000123,{"patch":{"a":[1,[2,"]"]]}},"t"]`,
			`{"kind":"state_updated","rev":3,"at":1733400000123,"lease":"t","payload":{"patch":{"a":[1,[2,"]"]]}}}`,
			FlowEvent{Kind: EventStateUpdated, Revision: 3, Lease: "t", Payload: json.RawMessage(`{"patch":{"a":[1,[2,"]"]]}}`)}},
	}
	for _, c := range cases {
		want := c.want
		want.ID, want.FlowID, want.At = "5", id, at
		for _, entry := range []string{c.compact, c.object} {
			got, err := decodeEvent(id, 5, entry)
			if err != nil {
				t.Fatalf("%s: %s: %v", c.name, entry, err)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("%s: %s:\ngot  %+v\nwant %+v", c.name, entry, *got, want)
			}
		}
	}
	for _, bad := range []string{
		`[`, `[]`, `["created",0,1]`, `["created",0,1,{},"t","u"]`, `[1,0,1,{}]`,
		`["created","0",1,{}]`, `["created",0,1.5,{}]`, `["created",0,1,{},7]`, `{"kind":1}`, `nonsense`,
		`["created",0,1,]`, `["created",0,1,{]`, `["created",0,1,{}`, `["created",0,1,{}]x`, `["created",0,1,{},"t"`,
		`["cre` + "\n" + `ated",0,1,{}]`, `["created,0,1,{}]`, `["created",0,1,{"a":"]}]`,
	} {
		if _, err := decodeEvent(id, 1, bad); !errors.Is(err, ErrInvalidData) {
			t.Errorf("%s: %v, want ErrInvalidData", bad, err)
		}
	}
}

// TestAuditEntriesAreCompact: the scripts keep each audit entry as an
// array without key names, and the events a caller reads from it are what
// the object form gave: kinds, revisions, leases, payloads. A finished
// job (created, claimed, finished) keeps a log under 70% of the object
// form's bytes and a flow hash Redis encodes as a listpack.
func TestAuditEntriesAreCompact(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "compact", Goal: "g", OwnerSessionKey: "o", State: map[string]any{"message": 1}})))
		fl, lease, err := e.m.Claim(ctx, "compact", "w", time.Minute)
		if err != nil || fl == nil || fl.ID != f.ID {
			t.Fatalf("claim: %v, %v", fl, err)
		}
		must(t, try(e.m.Finish(ctx, f.ID, nil, WithLease(lease))))
		entries, size, eb := auditLog(t, e, f.ID)
		if eb != size {
			t.Fatalf("eb %d, the log holds %d bytes", eb, size)
		}
		for _, x := range entries {
			if !strings.HasPrefix(x, `["`) || strings.Contains(x, `"payload"`) {
				t.Fatalf("entry not in the compact form: %s", x)
			}
		}
		evs := must(t, try(e.m.ListEvents(ctx, f.ID, 10)))
		type ev struct {
			kind    EventKind
			rev     int64
			lease   string
			payload string
		}
		var got []ev
		for _, x := range evs {
			got = append(got, ev{x.Kind, x.Revision, x.Lease, string(x.Payload)})
		}
		want := []ev{
			{EventFinished, 2, lease.Token, `{"final_state":null}`},
			{EventClaimed, 1, lease.Token, `{"worker":"w"}`},
			{EventStarted, 1, "", `{}`},
			{EventCreated, 0, "", `{"controller_id":"compact","current_step":"","goal":"g"}`},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("events:\ngot  %+v\nwant %+v", got, want)
		}
		// Under 70% of the object form the entries were kept in before.
		objectForm := 0
		for _, x := range evs {
			b, _ := json.Marshal(storedEvent{Kind: x.Kind, Revision: x.Revision, At: x.At.UnixMilli(), Lease: x.Lease, Payload: x.Payload})
			objectForm += len(b)
		}
		if size*10 > objectForm*7 {
			t.Fatalf("the log holds %d bytes, the object form %d", size, objectForm)
		}
		// The finished flow's hash stays a listpack (Redis turns a hash
		// with a value over hash-max-listpack-value, 64 bytes, into a
		// hashtable, hundreds of bytes more per flow).
		fields := must(t, try(e.client.HGetAll(ctx, e.store.keys.flow(f.ID)).Result()))
		for k, v := range fields {
			if len(v) > 64 {
				t.Fatalf("field %s holds %d bytes: %q", k, len(v), v)
			}
		}
		if e.b.real {
			if enc := must(t, try(e.client.ObjectEncoding(ctx, e.store.keys.flow(f.ID)).Result())); enc != "listpack" && enc != "ziplist" {
				t.Fatalf("the finished flow's hash is a %s", enc)
			}
		}
		wantVerifyClean(t, e, 1)
	})
}

// TestOldAuditEntriesStillRead: a flow whose log was written in the
// object form before reads back the same events, takes new entries in the
// compact form after them, keeps its byte bound over both, and verifies
// clean.
func TestOldAuditEntriesStillRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := e.ctx
		f := must(t, try(e.m.CreateMirrored(ctx, CreateManagedInput{ControllerID: "old", Goal: "g", OwnerSessionKey: "o"})))
		f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]any{"a": []any{1, "]"}}, "")))
		before := must(t, try(e.m.ListEvents(ctx, f.ID, 10)))
		// Rewrite the log as a flow space of the object form kept it.
		entries, _, _ := auditLog(t, e, f.ID)
		old := make([]any, len(entries))
		eb := 0
		for i, x := range entries {
			ev, err := decodeEvent(f.ID, 0, x)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(storedEvent{Kind: ev.Kind, Revision: ev.Revision, At: ev.At.UnixMilli(), Lease: ev.Lease, Payload: ev.Payload})
			if err != nil {
				t.Fatal(err)
			}
			old[i] = string(b)
			eb += len(b)
		}
		pipe := e.client.TxPipeline()
		pipe.Del(ctx, e.store.keys.events(f.ID))
		pipe.RPush(ctx, e.store.keys.events(f.ID), old...)
		pipe.HSet(ctx, e.store.keys.flow(f.ID), "eb", strconv.Itoa(eb))
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if got := must(t, try(e.m.ListEvents(ctx, f.ID, 10))); !reflect.DeepEqual(got, before) {
			t.Fatalf("the object form reads otherwise:\ngot  %+v\nwant %+v", got, before)
		}
		wantVerifyClean(t, e, 1)
		// A new entry goes on top in the compact form, counted with the old.
		f = must(t, try(e.m.UpdateState(ctx, f.ID, map[string]int{"b": 2}, "")))
		entries, size, gotEB := auditLog(t, e, f.ID)
		if gotEB != size || !strings.HasPrefix(entries[0], "[") || !strings.HasPrefix(entries[1], "{") {
			t.Fatalf("eb %d of %d bytes, entries %q", gotEB, size, entries)
		}
		after := must(t, try(e.m.ListEvents(ctx, f.ID, 10)))
		if len(after) != len(before)+1 || !reflect.DeepEqual(after[1:], before) || after[0].Kind != EventStateUpdated || !strings.Contains(string(after[0].Payload), `"patch":{"b":2}`) {
			t.Fatalf("after a new entry: %d events, newest %s %s, was %d", len(after), after[0].Kind, after[0].Payload, len(before))
		}
		wantVerifyClean(t, e, 1)
	})
}

// FuzzCompactEvent: the scanner of the compact form agrees with
// encoding/json: an entry it reads is a JSON array of 4 or 5 parts
// holding the same kind, numbers, payload and lease, and a well-formed
// entry (as the scripts write it) reads.
func FuzzCompactEvent(f *testing.F) {
	for _, s := range []string{
		`["created",0,1733400000123,{"controller_id":"c","goal":"g"}]`,
		`["finished",2,1733400000123,{"final_state":null},"ebb56e7de945f5c20b60adcb"]`,
		`["a \"kind\" ]",7,1,"x\"]"]`, `["k",3,1,{"patch":{"a":[1,[2,"]"]]}},"t"]`, `["k",1,2,[],"\u00e9"]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		if !strings.HasPrefix(entry, "[") {
			return
		}
		got, err := decodeCompactEvent(entry)
		var parts []json.RawMessage
		jerr := json.Unmarshal([]byte(entry), &parts)
		if err != nil {
			// Refused: then it is not an entry as the scripts write it.
			if jerr != nil || (len(parts) != 4 && len(parts) != 5) {
				return
			}
			var kind string
			_, rerr := strconv.ParseInt(string(parts[1]), 10, 64)
			_, aerr := strconv.ParseInt(string(parts[2]), 10, 64)
			kerr := json.Unmarshal(parts[0], &kind)
			lerr := error(nil)
			if len(parts) == 5 {
				var lease string
				lerr = json.Unmarshal(parts[4], &lease)
			}
			canonical, _ := json.Marshal(kind)
			if kerr == nil && rerr == nil && aerr == nil && lerr == nil && string(parts[0]) == string(canonical) &&
				!strings.ContainsAny(entry, " \t\r\n") {
				t.Fatalf("%q refused (%v), but encoding/json reads it", entry, err)
			}
			return
		}
		if jerr != nil {
			t.Fatalf("%q read as %+v, but it is not JSON: %v", entry, got, jerr)
		}
		if len(parts) != 4 && len(parts) != 5 {
			t.Fatalf("%q read, but it has %d parts", entry, len(parts))
		}
		var kind EventKind
		if err := json.Unmarshal(parts[0], &kind); err != nil || kind != got.Kind {
			t.Fatalf("%q: kind %q, encoding/json %q (%v)", entry, got.Kind, kind, err)
		}
		for i, n := range []int64{got.Revision, got.At} {
			if m, err := strconv.ParseInt(string(parts[1+i]), 10, 64); err != nil || m != n {
				t.Fatalf("%q: part %d read as %d, encoding/json %s", entry, 1+i, n, parts[1+i])
			}
		}
		if string(parts[3]) != string(got.Payload) {
			t.Fatalf("%q: payload %s, encoding/json %s", entry, got.Payload, parts[3])
		}
		if len(parts) == 5 {
			var lease string
			if err := json.Unmarshal(parts[4], &lease); err != nil || lease != got.Lease {
				t.Fatalf("%q: lease %q, encoding/json %q (%v)", entry, got.Lease, lease, err)
			}
		}
	})
}

// FuzzDecodeRecord: a packed record (a lean reply) decodes in place to
// the flow decodeFlow makes of the same fields read into a map, for
// every string: well formed, absent fields, malformed or cut short (the
// fields before the fault, then refused when the status is missing).
func FuzzDecodeRecord(f *testing.F) {
	full := map[string]string{
		"controller": "kate/inbox", "goal": "triage", "owner": "agent:kate", "origin": "user:kate",
		"step": "fetch", "status": "waiting", "cancel": "1", "rev": "42", "created": "1733400000123",
		"updated": "1733400000456", "wait": `{"kind":"external_event"}`, "corr": "reply\njob-7", "raw": "0",
		"size": "120", "seq": "9", "att": "2", "tp": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"ep": "Xy3_a9Qk", "parent": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "ckey": "k:1", "kids": "3",
		"gk": "3\ntenant:acme\nmodel:x",
	}
	running := map[string]string{"controller": "c", "goal": "", "status": "running", "rev": "1", "created": "1", "updated": "2"}
	for _, m := range []map[string]string{full, running} {
		packed := packRecordForTest(m)
		f.Add(packed, false)
		f.Add(packed, true)
		f.Add(packed[:len(packed)/2], false)
	}
	for _, s := range []string{"", "-", "x:", "3:abc", "-5:abc", "99:abc", "1:a1:b", "-----5:ready-2:10"} {
		f.Add(s, false)
	}
	id := uuid.MustParse("01234567-89ab-cdef-0123-456789abcdef")
	f.Fuzz(func(t *testing.T, packed string, withState bool) {
		got, err := decodeRecord(id, packed, withState)
		want, werr := decodeFlow(id, unpackRecordForTest(packed), withState)
		if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
			t.Fatalf("%q: error %v, through a map %v", packed, err, werr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n%+v\nthrough a map\n%+v", packed, got, want)
		}
	})
}

// packRecordForTest packs m's record fields as lua/include/record.lua
// pack_record does.
func packRecordForTest(m map[string]string) string {
	var b strings.Builder
	for _, name := range recordFields {
		v, ok := m[name]
		if !ok {
			b.WriteString("-")
			continue
		}
		b.WriteString(strconv.Itoa(len(v)) + ":" + v)
	}
	return b.String()
}

// unpackRecordForTest reads a packed record into a map, as the reply
// decoder did before it read records in place: the fields before a
// fault.
func unpackRecordForTest(packed string) map[string]string {
	m := make(map[string]string, len(recordFields))
	rest := packed
	for _, name := range recordFields {
		if rest == "" {
			break
		}
		if rest[0] == '-' {
			rest = rest[1:]
			continue
		}
		colon := strings.IndexByte(rest, ':')
		if colon <= 0 {
			break
		}
		n, err := strconv.Atoi(rest[:colon])
		if err != nil || n < 0 || colon+1+n > len(rest) {
			break
		}
		m[name] = rest[colon+1 : colon+1+n]
		rest = rest[colon+1+n:]
	}
	return m
}
