package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sqlcache/sqlcache/invalidator/pglogical"
)

// streamChildEnv, when set to a DSN, makes TestStreamTemporarySlotGone run
// as the child process that holds a slot: it streams from the DSN, prints
// "slot <name>" once fresh, and waits to be killed.
const streamChildEnv = "SQLCACHE_TEST_STREAM_CHILD_DSN"

// TestStreamTemporarySlotGone: a temporary slot disappears from
// pg_replication_slots when the stream is closed, and when the process
// holding it is killed with SIGKILL, without any cleanup of ours. The
// second case runs a real Stream in a child process (this test binary,
// run again with streamChildEnv set) and kills it: the kernel closes its
// socket, the walsender exits and PostgreSQL drops the slot.
func TestStreamTemporarySlotGone(t *testing.T) {
	if dsn := os.Getenv(streamChildEnv); dsn != "" {
		runStreamChild(dsn)
		return
	}
	t.Parallel()
	p := StartPostgres(t)
	admin := p.Conn(t)
	waitGone := func(slot string) {
		t.Helper()
		d := waitUntil(t, 10*time.Second, "temporary slot "+slot+" dropped", func() bool { return !slotExists(t, admin, slot) })
		t.Logf("slot %s gone %v later", slot, d.Round(time.Millisecond))
	}

	t.Run("Close", func(t *testing.T) {
		s, _, _ := startStream(t, p, nil)
		waitStreamFresh(t, s, 10*time.Second)
		slot := s.Status().Slot
		if !slotExists(t, admin, slot) {
			t.Fatalf("slot %s not in pg_replication_slots while streaming", slot)
		}
		s.Close()
		waitGone(slot)
	})

	t.Run("SIGKILL", func(t *testing.T) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStreamTemporarySlotGone$")
		cmd.Env = append(os.Environ(), streamChildEnv+"="+p.URL("postgres", "", "postgres"))
		cmd.SysProcAttr = procAttr(nil) // dies with us
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		slots := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if name, ok := strings.CutPrefix(sc.Text(), "slot "); ok {
					slots <- name
				}
			}
			close(slots)
		}()
		var slot string
		select {
		case slot = <-slots:
		case <-time.After(30 * time.Second):
			t.Fatal("the child process reported no slot within 30s")
		}
		if slot == "" {
			t.Fatal("the child process exited without a slot")
		}
		var temporary, active bool
		if err := admin.QueryRow(t.Context(), `SELECT temporary, active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&temporary, &active); err != nil {
			t.Fatalf("the child's slot %s: %v", slot, err)
		}
		if !temporary || !active {
			t.Fatalf("the child's slot %s: temporary %v, active %v; want both", slot, temporary, active)
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		waitGone(slot)
	})
}

// runStreamChild is the child process of TestStreamTemporarySlotGone.
func runStreamChild(dsn string) {
	s := pglogical.Start(pglogical.Config{DSN: dsn, Database: "postgres", CreatePublication: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !s.WaitFresh(ctx, time.Now()) {
		fmt.Fprintf(os.Stderr, "child stream not fresh: %+v\n", s.Status())
		os.Exit(1)
	}
	fmt.Printf("slot %s\n", s.Status().Slot)
	select {} // until SIGKILL
}
