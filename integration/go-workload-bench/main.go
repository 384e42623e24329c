// Command go-workload-bench times per-PID workload attestation the way spire-agent 1.15.3 does it: SPIRE's
// own plugin catalog (pkg/common/catalog) loads SPIRE's built-in `unix` WorkloadAttestor (served in
// memory through the catalog's built-in plugin transport) and our external plugin binary (started by
// go-plugin with plugin_cmd + plugin_checksum, gRPC over a Unix socket), and each is called through
// SPIRE's WorkloadAttestor v1 facade (workloadattestor.V1.Attest, the call pkg/agent/attestor/workload
// makes per plugin). Both are configured to compute the same facts: uid/gid, user/group names,
// supplementary groups, executable path and SHA-256 (unix: discover_workload_path + workload_size_limit;
// ours: discover_path + discover_digest + max_digest_bytes, the same 1 GiB cap).
//
// PIDs: -children long-running children, each running its own copy of -child-binary (distinct files,
// so a digest cache cannot share work between PIDs), plus this process itself (a large Go binary).
//
//   - cold: -cold-rounds times, a fresh catalog (new built-in instance, new plugin process, so every
//     cache is empty), then the first attestation of every PID with every attestor;
//   - cached: one catalog, -warmup rounds, then -iterations rounds of one attestation per PID per attestor;
//   - floor: in each cached round, one call per attestor for PID -1, which fails before reading anything:
//     the cost of the call itself (SPIRE's facade, gRPC, the plugin transport), for the breakdown.
//
// Calls are interleaved (PID order and attestor order rotate every round) so load on the machine hits
// all attestors alike. Reports median, p90, p99 and minimum per attestor, per PID class (child, self,
// all) and phase, and the ratios of ours over the built-in, as JSON on stdout.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire/pkg/agent/plugin/workloadattestor"
	"github.com/spiffe/spire/pkg/agent/plugin/workloadattestor/unix"
	"github.com/spiffe/spire/pkg/common/catalog"
)

const pluginType = "WorkloadAttestor"

// The agent's workload attestor repository (pkg/agent/catalog's is unexported), limited to the one
// built-in benchmarked; Binder, Versions and the facade are the same as SPIRE's.
type waRepo struct {
	workloadattestor.Repository
}

func (r *waRepo) Binder() any                      { return r.AddWorkloadAttestor }
func (r *waRepo) Constraints() catalog.Constraints { return catalog.AtLeastOne() }
func (r *waRepo) Versions() []catalog.Version      { return []catalog.Version{waV1{}} }
func (r *waRepo) BuiltIns() []catalog.BuiltIn      { return []catalog.BuiltIn{unix.BuiltIn()} }
func (r *waRepo) Plugins() map[string]catalog.PluginRepo {
	return map[string]catalog.PluginRepo{pluginType: r}
}
func (r *waRepo) Services() []catalog.ServiceRepo { return nil }

type waV1 struct{}

func (waV1) New() catalog.Facade { return new(workloadattestor.V1) }
func (waV1) Deprecated() bool    { return false }

type loaded struct {
	cat       *catalog.Catalog
	attestors map[string]workloadattestor.WorkloadAttestor
}

func load(ctx context.Context, log logrus.FieldLogger, configs []catalog.PluginConfig) (*loaded, error) {
	repo := new(waRepo)
	cat, err := catalog.Load(ctx, catalog.Config{
		Log:           log,
		PluginConfigs: configs,
		CoreConfig:    catalog.CoreConfig{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")},
	}, repo)
	if err != nil {
		return nil, err
	}
	l := &loaded{cat: cat, attestors: map[string]workloadattestor.WorkloadAttestor{}}
	for _, a := range repo.GetWorkloadAttestors() {
		l.attestors[a.Name()] = a
	}
	return l, nil
}

type target struct {
	pid   int
	class string
	exe   string
	size  int64
}

type stats struct {
	N        int     `json:"n"`
	MedianNS float64 `json:"median_ns"`
	P90NS    float64 `json:"p90_ns"`
	P99NS    float64 `json:"p99_ns"`
	MinNS    float64 `json:"min_ns"`
	MeanNS   float64 `json:"mean_ns"`
}

func summarize(samples []time.Duration) stats {
	if len(samples) == 0 {
		return stats{}
	}
	s := append([]time.Duration(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) float64 {
		i := int(p*float64(len(s)-1) + 0.5)
		return float64(s[i].Nanoseconds())
	}
	var sum float64
	for _, d := range s {
		sum += float64(d.Nanoseconds())
	}
	return stats{N: len(s), MedianNS: q(0.5), P90NS: q(0.9), P99NS: q(0.99), MinNS: float64(s[0].Nanoseconds()), MeanNS: sum / float64(len(s))}
}

// samples[phase][attestor][class]
type samples map[string]map[string]map[string][]time.Duration

func (s samples) add(phase, attestor, class string, d time.Duration) {
	if s[phase] == nil {
		s[phase] = map[string]map[string][]time.Duration{}
	}
	if s[phase][attestor] == nil {
		s[phase][attestor] = map[string][]time.Duration{}
	}
	s[phase][attestor][class] = append(s[phase][attestor][class], d)
	s[phase][attestor]["all"] = append(s[phase][attestor]["all"], d)
}

func attestOnce(ctx context.Context, a workloadattestor.WorkloadAttestor, pid int) (time.Duration, []string, error) {
	start := time.Now()
	sels, err := a.Attest(ctx, pid)
	d := time.Since(start)
	if err != nil {
		return d, nil, err
	}
	values := make([]string, 0, len(sels))
	for _, s := range sels {
		values = append(values, s.Value)
	}
	return d, values, nil
}

// round attests every target once with every attestor, rotating both orders by r.
func round(ctx context.Context, l *loaded, names []string, targets []target, r int, phase string, out samples) error {
	for i := range targets {
		t := targets[(i+r)%len(targets)]
		for j := range names {
			name := names[(j+r+i)%len(names)]
			d, _, err := attestOnce(ctx, l.attestors[name], t.pid)
			if err != nil {
				return fmt.Errorf("%s: attesting pid %d (%s): %w", name, t.pid, t.class, err)
			}
			if out != nil {
				out.add(phase, name, t.class, d)
			}
		}
	}
	return nil
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeProvenanceStore makes a store with an SLSA v1 provenance and a CycloneDX SBOM for digestHex,
// signed (DSSE, ECDSA P-256, DER) by a fresh key; returns the public key's path.
func writeProvenanceStore(dir, digestHex string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", err
	}
	pub := filepath.Join(dir, "ci.pub")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return "", err
	}
	sub := filepath.Join(dir, "store", "sha256", digestHex)
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return "", err
	}
	const repo = "https://github.com/twi-spire/bench"
	predicates := map[string]any{
		"https://slsa.dev/provenance/v1": map[string]any{
			"buildDefinition": map[string]any{
				"buildType":            "https://actions.github.io/buildtypes/workflow/v1",
				"externalParameters":   map[string]any{"workflow": map[string]any{"ref": "refs/heads/main", "repository": repo}},
				"resolvedDependencies": []any{map[string]any{"uri": "git+" + repo + "@refs/heads/main", "digest": map[string]any{"gitCommit": strings.Repeat("7f", 20)}}},
			},
			"runDetails": map[string]any{"builder": map[string]any{"id": "https://github.com/actions/runner/github-hosted"}},
		},
		"https://cyclonedx.org/bom/v1.5": map[string]any{
			"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
			"components": []any{map[string]any{"type": "library", "name": "libc", "version": "2.36"}},
		},
	}
	i := 0
	for pt, pred := range predicates {
		payload, err := json.Marshal(map[string]any{
			"_type":         "https://in-toto.io/Statement/v1",
			"subject":       []any{map[string]any{"name": "sleep", "digest": map[string]any{"sha256": digestHex}}},
			"predicateType": pt,
			"predicate":     pred,
		})
		if err != nil {
			return "", err
		}
		const payloadType = "application/vnd.in-toto+json"
		pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
		digest := sha256.Sum256([]byte(pae))
		sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
		if err != nil {
			return "", err
		}
		env, err := json.Marshal(map[string]any{
			"payloadType": payloadType,
			"payload":     base64.StdEncoding.EncodeToString(payload),
			"signatures":  []any{map[string]any{"sig": base64.StdEncoding.EncodeToString(sig)}},
		})
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("att-%d.json", i)), env, 0o644); err != nil {
			return "", err
		}
		i++
	}
	return pub, nil
}

func hasAll(have []string, want []string) []string {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	var missing []string
	for _, w := range want {
		if !set[w] {
			missing = append(missing, w)
		}
	}
	return missing
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "go-workload-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	pluginPath := flag.String("plugin", "", "path of twi-agent-workloadattestor (required)")
	children := flag.Int("children", 4, "long-running child processes to attest (besides this process)")
	childBinary := flag.String("child-binary", "/usr/bin/sleep", "executable the children run (copied once per child)")
	coldRounds := flag.Int("cold-rounds", 15, "fresh catalogs for the cold phase")
	warmup := flag.Int("warmup", 20, "unrecorded rounds before the cached phase")
	iterations := flag.Int("iterations", 300, "recorded rounds of the cached phase")
	withProvenance := flag.Bool("provenance", true, "also load our plugin with a provenance store (attestor twi_provenance)")
	variant := flag.String("variant", "", "another build of the plugin, loaded as attestor twi_variant with twi's configuration (to compare changes in one run)")
	verbose := flag.Bool("v", false, "SPIRE catalog logs on stderr")
	flag.Parse()
	if *pluginPath == "" {
		return errors.New("-plugin PATH is required")
	}
	if *children < 1 || *coldRounds < 1 || *iterations < 1 {
		return errors.New("-children, -cold-rounds and -iterations must be at least 1")
	}
	startLoad := loadavg()
	plugin, err := filepath.Abs(*pluginPath)
	if err != nil {
		return err
	}
	checksum, _, err := fileSHA256(plugin)
	if err != nil {
		return fmt.Errorf("plugin binary: %w", err)
	}

	log := logrus.New()
	log.SetLevel(logrus.InfoLevel) // spire-agent's default log_level
	log.SetOutput(io.Discard)
	if *verbose {
		log.SetOutput(os.Stderr)
	}

	work, err := os.MkdirTemp("", "go-workload-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// Children, each on its own copy of the binary.
	var targets []target
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}()
	childDigest, childSize, err := fileSHA256(*childBinary)
	if err != nil {
		return fmt.Errorf("child binary: %w", err)
	}
	for i := 0; i < *children; i++ {
		exe := filepath.Join(work, fmt.Sprintf("child-%d", i))
		if err := copyFile(*childBinary, exe); err != nil {
			return err
		}
		cmd := exec.Command(exe, "3600")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting child: %w", err)
		}
		procs = append(procs, cmd)
		targets = append(targets, target{pid: cmd.Process.Pid, class: "child", exe: exe, size: childSize})
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	selfInfo, err := os.Stat(self)
	if err != nil {
		return err
	}
	targets = append(targets, target{pid: os.Getpid(), class: "self", exe: self, size: selfInfo.Size()})

	unixHCL := "discover_workload_path = true\nworkload_size_limit = 1073741824\n"
	twiHCL := "discover_path = true\ndiscover_digest = true\nmax_digest_bytes = 1073741824\n"
	configs := []catalog.PluginConfig{
		{Type: pluginType, Name: "unix", DataSource: catalog.FixedData(unixHCL)},
		{Type: pluginType, Name: "twi", Path: plugin, Checksum: checksum, DataSource: catalog.FixedData(twiHCL)},
	}
	names := []string{"unix", "twi"}
	if *withProvenance {
		pub, err := writeProvenanceStore(work, childDigest)
		if err != nil {
			return fmt.Errorf("provenance store: %w", err)
		}
		provHCL := twiHCL + fmt.Sprintf("provenance {\n  store_dir = %q\n  trusted_keys = [{ name = \"ci\", public_key_path = %q, build_level = 2 }]\n}\n",
			filepath.Join(work, "store"), pub)
		configs = append(configs, catalog.PluginConfig{Type: pluginType, Name: "twi_provenance", Path: plugin, Checksum: checksum, DataSource: catalog.FixedData(provHCL)})
		names = append(names, "twi_provenance")
	}
	if *variant != "" {
		vpath, err := filepath.Abs(*variant)
		if err != nil {
			return err
		}
		vsum, _, err := fileSHA256(vpath)
		if err != nil {
			return fmt.Errorf("variant binary: %w", err)
		}
		configs = append(configs, catalog.PluginConfig{Type: pluginType, Name: "twi_variant", Path: vpath, Checksum: vsum, DataSource: catalog.FixedData(twiHCL)})
		names = append(names, "twi_variant")
	}
	ctx := context.Background()
	out := samples{}

	// Cold: a fresh catalog per round; the first attestation of every PID.
	fmt.Fprintf(os.Stderr, "cold: %d rounds of %d PIDs x %d attestors\n", *coldRounds, len(targets), len(names))
	for r := 0; r < *coldRounds; r++ {
		l, err := load(ctx, log, configs)
		if err != nil {
			return fmt.Errorf("loading plugins: %w", err)
		}
		err = round(ctx, l, names, targets, r, "cold", out)
		l.cat.Close()
		if err != nil {
			return err
		}
	}

	// Cached: one catalog.
	l, err := load(ctx, log, configs)
	if err != nil {
		return fmt.Errorf("loading plugins: %w", err)
	}
	defer l.cat.Close()

	// Same facts: every selector the built-in emits, ours emits too (and provenance selectors appear).
	selectorSample := map[string][]string{}
	for _, t := range targets {
		_, u, err := attestOnce(ctx, l.attestors["unix"], t.pid)
		if err != nil {
			return err
		}
		for _, name := range names[1:] {
			_, v, err := attestOnce(ctx, l.attestors[name], t.pid)
			if err != nil {
				return err
			}
			if missing := hasAll(v, u); len(missing) > 0 {
				return fmt.Errorf("pid %d: %s lacks selectors the built-in emits: %v", t.pid, name, missing)
			}
			if name == "twi_provenance" && t.class == "child" && len(hasAll(v, []string{"provenance:verified:true", "sbom:format:cyclonedx"})) > 0 {
				return fmt.Errorf("pid %d: no provenance selectors from twi_provenance: %v", t.pid, v)
			}
			if t.class == "child" {
				selectorSample[name] = v
			}
		}
		if t.class == "child" {
			selectorSample["unix"] = u
		}
	}

	fmt.Fprintf(os.Stderr, "cached: %d warm-up + %d rounds of %d PIDs x %d attestors\n", *warmup, *iterations, len(targets), len(names))
	for r := 0; r < *warmup; r++ {
		if err := round(ctx, l, names, targets, r, "", nil); err != nil {
			return err
		}
	}
	for r := 0; r < *iterations; r++ {
		if err := round(ctx, l, names, targets, r, "cached", out); err != nil {
			return err
		}
		// The floor: a call that fails at once (PID -1: no process to read), through the same transport.
		for j := range names {
			name := names[(j+r)%len(names)]
			d, _, err := attestOnce(ctx, l.attestors[name], -1)
			if err == nil {
				return fmt.Errorf("%s: attesting pid -1 succeeded", name)
			}
			out.add("floor", name, "invalid_pid", d)
		}
	}

	type classReport struct {
		Attestors map[string]stats `json:"attestors"`
		// Ratios of ours over the built-in: median/median and p99/p99.
		RatioMedian map[string]float64 `json:"ratio_median"`
		RatioP99    map[string]float64 `json:"ratio_p99"`
	}
	phases := map[string]map[string]classReport{}
	for phase, byAtt := range out {
		phases[phase] = map[string]classReport{}
		classes := []string{"child", "self", "all"}
		if phase == "floor" {
			classes = []string{"invalid_pid"}
		}
		for _, class := range classes {
			cr := classReport{Attestors: map[string]stats{}, RatioMedian: map[string]float64{}, RatioP99: map[string]float64{}}
			for name, byClass := range byAtt {
				cr.Attestors[name] = summarize(byClass[class])
			}
			base := cr.Attestors["unix"]
			for _, name := range names[1:] {
				s := cr.Attestors[name]
				if base.MedianNS > 0 {
					cr.RatioMedian[name] = s.MedianNS / base.MedianNS
					cr.RatioP99[name] = s.P99NS / base.P99NS
				}
			}
			phases[phase][class] = cr
		}
	}
	type pidInfo struct {
		PID   int    `json:"pid"`
		Class string `json:"class"`
		Exe   string `json:"exe"`
		Bytes int64  `json:"bytes"`
	}
	var pids []pidInfo
	for _, t := range targets {
		pids = append(pids, pidInfo{t.pid, t.class, t.exe, t.size})
	}
	report := map[string]any{
		"date":          time.Now().UTC().Format(time.RFC3339),
		"spire_version": "1.15.3 (pkg/common/catalog, built-in unix, go-plugin external)",
		"go_version":    runtime.Version(),
		"machine":       map[string]any{"cpu_model": cpuModel(), "nproc": runtime.NumCPU(), "loadavg_start": startLoad, "loadavg_end": loadavg()},
		"plugin":        plugin,
		"config":        map[string]string{"unix": unixHCL, "twi": twiHCL},
		"cold_rounds":   *coldRounds,
		"iterations":    *iterations,
		"pids":          pids,
		"selectors":     selectorSample,
		"phases":        phases,
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(report)
}
