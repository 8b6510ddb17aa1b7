package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// tools are the paths of the programs the benchmark runs.
type tools struct {
	pgBinDir  string // holds initdb and postgres
	pgbench   string
	pgbouncer string
	pgpool    string
}

// Fixed paths of the Debian packages' daemons (not on a user's PATH).
const (
	pgbouncerPath = "/usr/sbin/pgbouncer"
	pgpoolPath    = "/usr/sbin/pgpool"
)

// ensureTools finds the programs, installing the Debian packages that are
// missing with apt-get when we are root, else failing with their names.
func ensureTools(ctx context.Context) (tools, error) {
	missing := missingPackages()
	if len(missing) > 0 {
		if os.Geteuid() != 0 {
			return tools{}, fmt.Errorf("missing Debian packages: %s (apt-get install %s, or run as root)",
				strings.Join(missing, " "), strings.Join(missing, " "))
		}
		if err := aptInstall(ctx, missing); err != nil {
			return tools{}, err
		}
		if still := missingPackages(); len(still) > 0 {
			return tools{}, fmt.Errorf("still missing after apt-get install: %s", strings.Join(still, " "))
		}
	}
	return findTools()
}

// missingPackages names the Debian packages whose programs are not found.
func missingPackages() []string {
	var missing []string
	if _, err := pgBinDir(); err != nil {
		missing = append(missing, "postgresql")
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup(pgOSUser); err != nil {
			missing = append(missing, "postgresql") // creates the postgres OS user
		}
	}
	if _, err := exec.LookPath("pgbench"); err != nil {
		missing = append(missing, "postgresql-client")
	}
	if !isExecutable(pgbouncerPath) {
		if _, err := exec.LookPath("pgbouncer"); err != nil {
			missing = append(missing, "pgbouncer")
		}
	}
	if !isExecutable(pgpoolPath) {
		if _, err := exec.LookPath("pgpool"); err != nil {
			missing = append(missing, "pgpool2")
		}
	}
	slices.Sort(missing)
	return slices.Compact(missing)
}

// aptInstall installs Debian packages non-interactively.
func aptInstall(ctx context.Context, pkgs []string) error {
	fmt.Printf("==> installing missing Debian packages: %s\n", strings.Join(pkgs, " "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	steps := [][]string{{"apt-get", "update", "-qq"}, append([]string{"apt-get", "install", "-y", "-qq"}, pkgs...)}
	for _, args := range steps {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// findTools resolves every program's path.
func findTools() (tools, error) {
	var t tools
	var err error
	if t.pgBinDir, err = pgBinDir(); err != nil {
		return t, err
	}
	if t.pgbench, err = exec.LookPath("pgbench"); err != nil {
		return t, fmt.Errorf("pgbench: %w", err)
	}
	if t.pgbouncer, err = daemonPath(pgbouncerPath); err != nil {
		return t, err
	}
	if t.pgpool, err = daemonPath(pgpoolPath); err != nil {
		return t, err
	}
	return t, nil
}

// daemonPath returns the fixed Debian path of a daemon if it exists, else
// its path on PATH.
func daemonPath(fixed string) (string, error) {
	if isExecutable(fixed) {
		return fixed, nil
	}
	p, err := exec.LookPath(filepath.Base(fixed))
	if err != nil {
		return "", fmt.Errorf("%s not found: %w", filepath.Base(fixed), err)
	}
	return p, nil
}

// pgBinDir returns the directory holding initdb and postgres: pg_config's
// bindir, else the newest /usr/lib/postgresql/*/bin. Debian's pg_config may
// come from libpq-dev without a server.
func pgBinDir() (string, error) {
	var dirs []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(versioned, func(a, b string) int { return pgDirVersion(b) - pgDirVersion(a) })
	for _, dir := range append(dirs, versioned...) {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, postgres) not found: install the Debian package postgresql")
}

// pgDirVersion returns the major version in /usr/lib/postgresql/N/bin in
// tenths, so that 9.6 sorts below 10.
func pgDirVersion(binDir string) int {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return int(v * 10)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// versionOf runs "path --version" and returns its first line.
func versionOf(path string) string { return firstLineOf(path, "--version") }

// firstLineOf runs a command and returns the first line of its output.
func firstLineOf(path string, args ...string) string {
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}
