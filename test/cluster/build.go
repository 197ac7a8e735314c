package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Versions of the control plane the end-to-end tests run against.
const (
	EtcdVersion       = "v3.5.21"
	KubernetesVersion = "v1.34.2"
	// stagingVersion is the tag the staging modules (k8s.io/api, ...) carry
	// for KubernetesVersion.
	stagingVersion = "v0.34.2"
)

// Binaries are paths to the control-plane executables, and to a kubectl of
// the same version for poking at a running cluster by hand.
type Binaries struct {
	Etcd                  string
	KubeAPIServer         string
	KubeControllerManager string
	Kubectl               string
}

// BuildOptions tune EnsureBinaries.
type BuildOptions struct {
	// CacheDir holds bin/ and build/. Default: DefaultCacheDir().
	CacheDir string
	// Log receives progress lines. Default: os.Stderr.
	Log io.Writer
}

// DefaultCacheDir is $CLB_DIRECT_CACHE, or <repo>/_output where <repo> is
// the directory of the clb-direct go.mod above the working directory.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("CLB_DIRECT_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "_output"), nil
}

// RepoRoot walks up from the working directory (go test runs in the package
// directory) to the go.mod of module clb-direct.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && regexp.MustCompile(`(?m)^module\s+clb-direct\s*$`).Match(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cluster: cannot find the clb-direct go.mod above the working directory; set CLB_DIRECT_CACHE")
		}
		dir = parent
	}
}

// recipe describes how one binary is built from a scratch module.
type recipe struct {
	component string // binary name
	version   string
	scratch   string // scratch module directory name under build/
	pkg       string // main package to build
	ldflags   string
	// patched, if set, describes source patches applied with -overlay;
	// it is part of the recipe hash so patched and unpatched binaries
	// never get mixed up in the cache.
	patched string
}

// hash identifies what the recipe produces; it is stored next to the binary
// so a changed recipe under the same version rebuilds instead of silently
// reusing a stale binary.
func (r recipe) hash() string {
	h := sha256.Sum256([]byte(strings.Join([]string{r.component, r.version, r.pkg, r.ldflags, r.patched}, "\x00")))
	return hex.EncodeToString(h[:])
}

func (r recipe) binPath(cache string) string {
	return filepath.Join(cache, "bin", r.component+"-"+r.version, r.component)
}

func (r recipe) upToDate(cache string) bool {
	bin := r.binPath(cache)
	if _, err := os.Stat(bin); err != nil {
		return false
	}
	stamp, err := os.ReadFile(bin + ".recipe")
	return err == nil && strings.TrimSpace(string(stamp)) == r.hash()
}

var kubeLdflags = strings.Join([]string{
	"-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion,
	"-X k8s.io/component-base/version.gitMajor=1",
	"-X k8s.io/component-base/version.gitMinor=34",
	"-X k8s.io/component-base/version.gitTreeState=clean",
}, " ")

// endpointIPPatch is applied to the Kubernetes binaries. Endpoints and
// EndpointSlice validation rejects loopback addresses, but on these
// machines loopback is the only network Pods can have: without the patch
// the endpointslice controller could never publish a simulated Pod.
// Nothing else changes.
const endpointIPPatch = "allow loopback endpoint IPs"

var (
	etcdRecipe = recipe{
		component: "etcd", version: EtcdVersion, scratch: "etcd-" + EtcdVersion,
		pkg: "go.etcd.io/etcd/server/v3",
	}
	apiserverRecipe = recipe{
		component: "kube-apiserver", version: KubernetesVersion, scratch: "kubernetes-" + KubernetesVersion,
		pkg: "k8s.io/kubernetes/cmd/kube-apiserver", ldflags: kubeLdflags, patched: endpointIPPatch,
	}
	kcmRecipe = recipe{
		component: "kube-controller-manager", version: KubernetesVersion, scratch: "kubernetes-" + KubernetesVersion,
		pkg: "k8s.io/kubernetes/cmd/kube-controller-manager", ldflags: kubeLdflags, patched: endpointIPPatch,
	}
	// kubectl shares the Kubernetes scratch module (whose k8s.io/kubernetes
	// is the patched mirror) but does not link the patched validation
	// package, so it is an unpatched kubectl and its recipe says so.
	kubectlRecipe = recipe{
		component: "kubectl", version: KubernetesVersion, scratch: "kubernetes-" + KubernetesVersion,
		pkg: "k8s.io/kubernetes/cmd/kubectl", ldflags: kubeLdflags,
	}
)

// EnsureBinaries returns the control-plane binaries, building the missing
// ones into <cache>/bin/<component>-<version>/. Cold builds take minutes;
// later calls return at once. Concurrent callers (parallel test packages)
// serialize on a file lock.
func EnsureBinaries(ctx context.Context, opts BuildOptions) (Binaries, error) {
	cache := opts.CacheDir
	if cache == "" {
		var err error
		if cache, err = DefaultCacheDir(); err != nil {
			return Binaries{}, err
		}
	}
	log := opts.Log
	if log == nil {
		log = os.Stderr
	}
	recipes := []recipe{etcdRecipe, apiserverRecipe, kcmRecipe, kubectlRecipe}
	bins := Binaries{
		Etcd:                  etcdRecipe.binPath(cache),
		KubeAPIServer:         apiserverRecipe.binPath(cache),
		KubeControllerManager: kcmRecipe.binPath(cache),
		Kubectl:               kubectlRecipe.binPath(cache),
	}
	if allUpToDate(cache, recipes) {
		return bins, nil
	}

	if err := os.MkdirAll(filepath.Join(cache, "build"), 0o755); err != nil {
		return Binaries{}, err
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "build", ".lock"), log)
	if err != nil {
		return Binaries{}, err
	}
	defer unlock()

	b := &builder{cache: cache, log: log}
	for _, r := range recipes {
		// Checked again under the lock: another process may have built it.
		if r.upToDate(cache) {
			continue
		}
		if err := b.build(ctx, r); err != nil {
			return Binaries{}, err
		}
	}
	return bins, nil
}

func allUpToDate(cache string, rs []recipe) bool {
	for _, r := range rs {
		if !r.upToDate(cache) {
			return false
		}
	}
	return true
}

// lockFile takes an exclusive flock, which the kernel releases if the
// holder dies, so a killed build never leaves the cache locked.
func lockFile(ctx context.Context, path string, log io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	waiting := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !waiting {
			fmt.Fprintf(log, "[build] waiting for another process building into %s\n", filepath.Dir(path))
			waiting = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

type builder struct {
	cache string
	log   io.Writer
	// prepared records the scratch modules already written and tidied in
	// this run (apiserver and controller-manager share one).
	prepared map[string]bool
}

func (b *builder) build(ctx context.Context, r recipe) error {
	start := time.Now()
	fmt.Fprintf(b.log, "[build] %s %s: building (first run only; takes minutes on 2 cores)\n", r.component, r.version)
	stop := b.progress(r, start)
	defer stop()

	dir, err := b.prepare(ctx, r)
	if err != nil {
		return fmt.Errorf("build %s %s: %w", r.component, r.version, err)
	}
	bin := r.binPath(b.cache)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	// Build to a temporary name and rename: an interrupted build never
	// leaves something that looks like a finished binary.
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	defer os.Remove(tmp)
	args := []string{"build", "-trimpath", "-o", tmp}
	if r.ldflags != "" {
		args = append(args, "-ldflags", r.ldflags)
	}
	args = append(args, r.pkg)
	if _, err := b.goCmd(ctx, dir, r.component, args...); err != nil {
		return fmt.Errorf("build %s %s: %w", r.component, r.version, err)
	}
	if err := os.WriteFile(tmp+".recipe", []byte(r.hash()+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, bin); err != nil {
		return err
	}
	if err := os.Rename(tmp+".recipe", bin+".recipe"); err != nil {
		return err
	}
	fmt.Fprintf(b.log, "[build] %s %s: done in %s -> %s\n", r.component, r.version, time.Since(start).Round(time.Second), bin)
	return nil
}

// progress prints a line every 30s so a long cold build does not look hung.
func (b *builder) progress(r recipe, start time.Time) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(b.log, "[build] %s %s: still building (%s elapsed)\n", r.component, r.version, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}

// prepare writes and tidies the scratch module for r. Kubernetes and etcd
// are only ever required here, never by the project's own go.mod.
func (b *builder) prepare(ctx context.Context, r recipe) (string, error) {
	dir := filepath.Join(b.cache, "build", r.scratch)
	if b.prepared[r.scratch] {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var requires, replaces []string
	var imports []string
	switch r.scratch {
	case etcdRecipe.scratch:
		requires = []string{"go.etcd.io/etcd/server/v3 " + EtcdVersion}
		imports = []string{etcdRecipe.pkg}
	case apiserverRecipe.scratch:
		// k8s.io/kubernetes points its staging modules at ./staging/...,
		// which does not exist in the module zip: every one of them must be
		// replaced by its published tag. Read the list from the real go.mod
		// so a new staging module cannot be forgotten.
		if err := writeGoMod(dir, "scratch/kubernetes", nil, nil); err != nil {
			return "", err
		}
		out, err := b.goCmd(ctx, dir, "download", "mod", "download", "-json", "k8s.io/kubernetes@"+KubernetesVersion)
		if err != nil {
			return "", err
		}
		var info struct{ GoMod, Dir string }
		if err := json.Unmarshal(out, &info); err != nil {
			return "", fmt.Errorf("parse go mod download output: %w", err)
		}
		gomod, err := os.ReadFile(info.GoMod)
		if err != nil {
			return "", err
		}
		staging := stagingModules(gomod)
		if len(staging) == 0 {
			return "", errors.New("no staging replace directives found in k8s.io/kubernetes go.mod")
		}
		for _, s := range staging {
			replaces = append(replaces, s+" => "+s+" "+stagingVersion)
		}
		// The patched copy of k8s.io/kubernetes: the go command refuses
		// -overlay for files in the module cache, so the module is
		// mirrored with symlinks and only the patched file is real.
		if err := mirrorPatched(info.Dir, filepath.Join(dir, "kubernetes")); err != nil {
			return "", err
		}
		replaces = append(replaces, "k8s.io/kubernetes => ./kubernetes")
		requires = []string{"k8s.io/kubernetes " + KubernetesVersion}
		imports = []string{apiserverRecipe.pkg, kcmRecipe.pkg, kubectlRecipe.pkg}
	default:
		return "", fmt.Errorf("unknown scratch module %q", r.scratch)
	}
	if err := writeGoMod(dir, "scratch/"+strings.SplitN(r.scratch, "-", 2)[0], requires, replaces); err != nil {
		return "", err
	}
	// A tools file keeps the main packages' dependencies in go.mod for tidy.
	var tools strings.Builder
	tools.WriteString("//go:build tools\n\npackage tools\n\nimport (\n")
	for _, imp := range imports {
		fmt.Fprintf(&tools, "\t_ %q\n", imp)
	}
	tools.WriteString(")\n")
	if err := os.WriteFile(filepath.Join(dir, "tools.go"), []byte(tools.String()), 0o644); err != nil {
		return "", err
	}
	if _, err := b.goCmd(ctx, dir, "tidy", "mod", "tidy"); err != nil {
		return "", err
	}
	if b.prepared == nil {
		b.prepared = map[string]bool{}
	}
	b.prepared[r.scratch] = true
	return dir, nil
}

var stagingReplace = regexp.MustCompile(`(?m)^\s*(?:replace\s+)?(k8s\.io/\S+)\s+=>\s+\./staging/`)

// stagingModules lists the modules that kubernetes' go.mod replaces with
// ./staging directories.
func stagingModules(gomod []byte) []string {
	var mods []string
	for _, m := range stagingReplace.FindAllSubmatch(gomod, -1) {
		mods = append(mods, string(m[1]))
	}
	sort.Strings(mods)
	return mods
}

func writeGoMod(dir, module string, requires, replaces []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "module %s\n\ngo 1.24.0\n", module)
	if len(requires) > 0 {
		b.WriteString("\nrequire (\n")
		for _, r := range requires {
			fmt.Fprintf(&b, "\t%s\n", r)
		}
		b.WriteString(")\n")
	}
	if len(replaces) > 0 {
		b.WriteString("\nreplace (\n")
		for _, r := range replaces {
			fmt.Fprintf(&b, "\t%s\n", r)
		}
		b.WriteString(")\n")
	}
	return os.WriteFile(filepath.Join(dir, "go.mod"), []byte(b.String()), 0o644)
}

// mirrorPatched recreates the module directory src at dst as real
// directories of symlinks (tests and testdata left out), with the patched
// file written for real.
func mirrorPatched(src, dst string) error {
	const patchedFile = "pkg/apis/core/validation/validation.go"
	orig, err := os.ReadFile(filepath.Join(src, patchedFile))
	if err != nil {
		return err
	}
	const check = "\tif ip.IsLoopback() {\n\t\tallErrs = append(allErrs, field.Invalid(fldPath, ipAddress, \"may not be in the loopback range (127.0.0.0/8, ::1/128)\"))\n\t}\n"
	// Fail loudly if the source moved on, rather than build something
	// that silently rejects Pod IPs again.
	if n := bytes.Count(orig, []byte(check)); n != 1 {
		return fmt.Errorf("patch %q: expected the loopback check once in %s, found %d", endpointIPPatch, patchedFile, n)
	}
	patched := bytes.Replace(orig, []byte(check), []byte("\t// clb-direct e2e: loopback endpoint IPs allowed (simulated Pods live on 127.0.0.0/8).\n"), 1)

	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir() && d.Name() == "testdata":
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case strings.HasSuffix(rel, "_test.go"):
			return nil
		case filepath.ToSlash(rel) == patchedFile:
			return os.WriteFile(target, patched, 0o644)
		default:
			return os.Symlink(path, target)
		}
	})
	if err != nil {
		return fmt.Errorf("mirror %s: %w", src, err)
	}
	return nil
}

// goCmd runs the go command in a scratch module and returns its stdout.
// Its stderr goes to build/<logName>.log, whose tail ends up in the error.
func (b *builder) goCmd(ctx context.Context, dir, logName string, args ...string) ([]byte, error) {
	logPath := filepath.Join(b.cache, "build", logName+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n$ (cd %s && go %s)\n", dir, strings.Join(args, " "))
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Stdout = &stdout
	cmd.Stderr = logf
	// The scratch modules must not see a go.work or the caller's -mod
	// setting, and they live inside the project's git tree, whose VCS
	// status is none of their business.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false")
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, tailFile(logPath, 20))
	}
	return stdout.Bytes(), nil
}

// tailFile returns the last n lines of a file (from its last 64 KiB), for
// error messages.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	const window = 64 * 1024
	if st, err := f.Stat(); err == nil && st.Size() > window {
		if _, err := f.Seek(-window, io.SeekEnd); err != nil {
			return ""
		}
	}
	data, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
