using System.Diagnostics;
using FastAttention.Cli.Infrastructure;

namespace FastAttention.Cli.Commands;

/// <summary>What happened to one algorithm on one problem.</summary>
internal enum RunStatus
{
    /// <summary>Planned, executed and timed.</summary>
    Ran,
    /// <summary>Refused when planning (typed reason).</summary>
    Refused,
    /// <summary>Planned, then refused during its run (rounding measured above ε).</summary>
    RefusedAtRun,
    /// <summary>Planned, but predicted to take more than 4× the exact kernel, or already slower than the whole exact
    /// kernel on a sample of the queries: not run in full.</summary>
    SlowerOnSample,
}

/// <summary>One algorithm's outcome on one problem: status, refusal code, time (plan + execute) over the repeats,
/// the plan's predicted seconds, its certified bound and the error measured on sampled rows.</summary>
internal sealed record AlgorithmRun(string Algorithm, RunStatus Status, RefusalReason? Reason, string Detail, Spread Seconds,
    double PredictedSeconds, double ErrorBound, double MaxAbsError, double Epsilon)
{
    /// <summary>Measured error within ε (NaN error: not run).</summary>
    public bool WithinEpsilon => MaxAbsError <= Epsilon;

    public string StatusName => Status switch
    {
        RunStatus.Ran => "ran",
        RunStatus.Refused => "refused",
        RunStatus.RefusedAtRun => "refused-at-run",
        _ => "slower-on-sample",
    };
}

/// <summary>The planner's choice on one problem and what it cost: the algorithm it ran, plan + execute seconds, the
/// measured error on sampled rows, and where the choice came from ("auto" when the library's planner is registered,
/// else "fastest measured": the fastest certified algorithm measured here, exact when none beats it).</summary>
internal sealed record PlannerPick(string Algorithm, Spread Seconds, double MaxAbsError, double ErrorBound, string Source);

/// <summary>Every algorithm on one problem, the exact kernel's time, and the planner's pick.</summary>
internal sealed record ProblemMeasurement(Spread ExactSeconds, bool ExactExtrapolated, IReadOnlyList<AlgorithmRun> Runs, PlannerPick Pick)
{
    /// <summary>Measured speedup of the planner's pick over the exact kernel (medians).</summary>
    public double Speedup => ExactSeconds.Median / Pick.Seconds.Median;

    /// <summary>True when every approximate algorithm refused (when planning or during its run).</summary>
    public bool AllRefused => Runs.All(r => r.Status is RunStatus.Refused or RunStatus.RefusedAtRun);
}

/// <summary>
/// Runs every registered approximate algorithm on a problem (head 0) through plan → execute, the way the planner sees
/// them: a typed refusal ends it; a plan is first run on a sample of the queries (its structure is still built over
/// all keys), and if that alone is slower than the exact kernel on the whole problem it is not run in full; otherwise
/// it is run once (output checked against the float64 reference on sampled rows) and timed <c>repeats</c> times. The
/// planner's pick is then timed the same way: the library's <c>auto</c> when registered, else the fastest certified
/// algorithm measured here (exact when none beats it) — switching is the one branch in <see cref="Pick"/>.
/// </summary>
internal static class RegimeMeasurement
{
    /// <summary>Names the planner is looked up by.</summary>
    public const string PlannerName = "auto";

    /// <summary>The approximate algorithms measured, in registry order (not exact, not reference, not the planner).</summary>
    public static IReadOnlyList<string> Candidates() =>
        AttentionAlgorithms.Names.Where(n => n != PlannerName && !AttentionAlgorithms.Create(n).IsExact).ToList();

    /// <summary>Parses --algorithms (comma-separated candidate names; null or empty: all).</summary>
    public static IReadOnlyCollection<string>? ParseAlgorithms(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        var all = Candidates();
        var list = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList();
        foreach (var a in list)
            if (!all.Contains(a, StringComparer.OrdinalIgnoreCase))
                throw new UsageException($"--algorithms: '{a}' is not an approximate algorithm (known: {string.Join(", ", all)}).");
        return list.Select(a => all.First(x => string.Equals(x, a, StringComparison.OrdinalIgnoreCase))).ToHashSet();
    }

    public static bool HasPlanner => AttentionAlgorithms.Names.Contains(PlannerName, StringComparer.OrdinalIgnoreCase);

    /// <summary>Runs every candidate (and the planner, when registered) once on <paramref name="small"/>, so that JIT and
    /// tiered compilation happen before anything is timed; refusals are ignored.</summary>
    public static void WarmUp(AttentionProblem<double> small, double epsilon, int threads, IReadOnlyCollection<string>? only = null)
    {
        var settings = new AttentionSettings { Epsilon = epsilon, Threads = threads, Rates = RatesCache.LoadOrDefault() };
        var names = Candidates().Where(n => only is null || only.Contains(n)).Append("exact").Concat(HasPlanner ? [PlannerName] : Array.Empty<string>());
        foreach (string name in names)
            for (int i = 0; i < 2; i++)
                try { AttentionAlgorithms.Create(name).Compute(small, settings); }
                catch (AttentionRefusedException) { }
    }

    public static ProblemMeasurement Run(AttentionProblem<double> problem, double epsilon, int threads, int repeats, int seed,
        int errorRows = 256, int pilotRows = 256, Action<string>? progress = null, IReadOnlyCollection<string>? only = null)
    {
        var (exactRun, exactScale, sampled, _) = Timing.ExactRunner(problem, threads, seed: seed);
        var exact = Timing.Seconds(exactRun, repeats).Times(exactScale);
        var rows = Instances.SampleRows(problem.N, errorRows, seed + 3);
        var reference = FastAttention.Exact.ReferenceAttention.ComputeRows(problem, 0, rows);
        var settings = new AttentionSettings { Epsilon = epsilon, Threads = threads, Rates = RatesCache.LoadOrDefault() };
        var runs = new List<AlgorithmRun>();
        foreach (string name in Candidates().Where(n => only is null || only.Contains(n)))
        {
            progress?.Invoke(name);
            runs.Add(RunOne(name, problem, settings, repeats, exact.Median, rows, reference, pilotRows, seed));
        }
        return new ProblemMeasurement(exact, sampled > 0, runs, Pick(problem, settings, repeats, exact, runs, rows, reference));
    }

    private static AlgorithmRun RunOne(string name, AttentionProblem<double> problem, AttentionSettings settings, int repeats, double exactSeconds,
        int[] rows, double[] reference, int pilotRows, int seed)
    {
        double eps = settings.Epsilon!.Value;
        var alg = AttentionAlgorithms.Create(name);
        var outcome = alg.TryPlan(problem, settings);
        if (outcome.Refusal is { } refusal)
            return new AlgorithmRun(name, RunStatus.Refused, refusal.Reason, refusal.Detail, default, double.NaN, double.NaN, double.NaN, eps);
        double predicted = outcome.Plan!.PredictedSeconds, planned = outcome.Plan.ErrorBound;
        // A plan predicted (from counted work and the machine rates) to take more than 4× the measured exact kernel is
        // not run: even a pilot on a sample of the queries would cost more than the exact kernel. Only a prediction that
        // rests on measured work counts decides this; an unsampled guess of a data-dependent structure goes to the pilot.
        bool measuredCost = outcome.Plan.Heads.All(h => h.Cost.Sampled || (h.Cost.TreeNodes == 0 && h.Cost.LeafKeys == 0));
        if (measuredCost && predicted > 4 * exactSeconds)
            return new AlgorithmRun(name, RunStatus.SlowerOnSample, null,
                $"predicted {predicted:G3} s, more than 4× exact ({exactSeconds:G3} s); not run", default, predicted, planned, double.NaN, eps);
        if (pilotRows < problem.N)
        {
            var pilot = Timing.SampleQueries(problem, Instances.SampleRows(problem.N, pilotRows, seed + 5));
            // Twice, the faster counts: the first run of a code path may still be compiling. A sample that refuses says
            // nothing about the time (the whole problem may refuse for its own reasons, or not): the full run decides.
            double pilotSeconds = double.PositiveInfinity;
            bool pilotRefused = false;
            for (int i = 0; i < 2 && pilotSeconds > exactSeconds && !pilotRefused; i++)
            {
                var sw = Stopwatch.StartNew();
                try { alg.Compute(pilot, settings); }
                catch (AttentionRefusedException) { pilotRefused = true; }
                pilotSeconds = Math.Min(pilotSeconds, sw.Elapsed.TotalSeconds);
            }
            if (!pilotRefused && pilotSeconds > exactSeconds)
                return new AlgorithmRun(name, RunStatus.SlowerOnSample, null,
                    $"{pilotRows} sampled queries took {pilotSeconds:G3} s, more than exact on all {problem.N} ({exactSeconds:G3} s)",
                    default, predicted, planned, double.NaN, eps);
        }
        try
        {
            var first = alg.Compute(problem, settings);
            double err = MaxError(first.Output, problem.Dv, rows, reference);
            var times = new double[repeats];
            for (int r = 0; r < repeats; r++)
            {
                var sw = Stopwatch.StartNew();
                alg.Compute(problem, settings);
                times[r] = sw.Elapsed.TotalSeconds;
            }
            return new AlgorithmRun(name, RunStatus.Ran, null, "", Spread.Of(times), predicted, first.Certificate.ErrorBound, err, eps);
        }
        catch (AttentionRefusedException e)
        {
            return new AlgorithmRun(name, RunStatus.RefusedAtRun, e.Reason, e.Refusal.Detail, default, predicted, planned, double.NaN, eps);
        }
    }

    /// <summary>The planner's pick: the library's planner when it is registered (timed, its output checked on the sampled
    /// rows); otherwise the fastest measured algorithm that ran within ε and beats exact, else exact.</summary>
    private static PlannerPick Pick(AttentionProblem<double> problem, AttentionSettings settings, int repeats, Spread exact,
        List<AlgorithmRun> runs, int[] rows, double[] reference)
    {
        if (HasPlanner)
        {
            var auto = AttentionAlgorithms.Create(PlannerName);
            var first = auto.Compute(problem, settings);
            var times = new double[repeats];
            for (int r = 0; r < repeats; r++)
            {
                var sw = Stopwatch.StartNew();
                auto.Compute(problem, settings);
                times[r] = sw.Elapsed.TotalSeconds;
            }
            return new PlannerPick(first.Certificate.Heads[0].Algorithm, Spread.Of(times), MaxError(first.Output, problem.Dv, rows, reference),
                first.Certificate.ErrorBound, PlannerName);
        }
        var best = runs.Where(r => r.Status == RunStatus.Ran && r.WithinEpsilon && r.Seconds.Median < exact.Median).MinBy(r => r.Seconds.Median);
        return best is null
            ? new PlannerPick("exact", exact, double.NaN, double.NaN, "fastest measured")
            : new PlannerPick(best.Algorithm, best.Seconds, best.MaxAbsError, best.ErrorBound, "fastest measured");
    }

    private static double MaxError(double[] output, int dv, int[] rows, double[] reference)
    {
        double err = 0;
        for (int r = 0; r < rows.Length; r++)
            for (int c = 0; c < dv; c++)
                err = Math.Max(err, Math.Abs(output[rows[r] * dv + c] - reference[r * dv + c]));
        return err;
    }
}
