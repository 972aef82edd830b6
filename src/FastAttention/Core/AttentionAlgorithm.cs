using System.Diagnostics;
using System.Numerics;
using System.Runtime.ExceptionServices;

namespace FastAttention;

/// <summary>
/// Base of every attention algorithm: plan, then execute. <see cref="TryPlan{T}"/> plans every head independently
/// (typed parameters, named error budget, counted work, predicted seconds) or returns a typed <see cref="Refusal"/>;
/// <see cref="AttentionPlan{T}.Execute(Span{T})"/> writes into the caller's buffer and returns the certificate,
/// recomputed from what the run measured. A subclass implements <see cref="PlanHead{T}"/> and
/// <see cref="ExecuteHead{T}"/> for one head; this class owns threads, cancellation, progress, the ε check, the
/// exact power-of-two rescaling of V near the float64 limit, and the assembly of certificates. Algorithms never know the CLI.
/// </summary>
public abstract class AttentionAlgorithm
{
    /// <summary>Short stable name used by the CLI and reports (e.g. "exact", "polynomial").</summary>
    public abstract string Name { get; }

    /// <summary>True when the output is exact up to floating-point rounding (no ε needed).</summary>
    public abstract bool IsExact { get; }

    /// <summary>True when the algorithm cannot run without ε (approximate algorithms); the planner runs exact without one.</summary>
    public virtual bool RequiresEpsilon => !IsExact;

    /// <summary>Plans every head, or says why not. Never throws a refusal; throws only for invalid arguments
    /// (and <see cref="OperationCanceledException"/> when cancelled).</summary>
    /// <param name="problem">Q [heads, n, d], K [heads, m, d], V [heads, m, dv], row-major, with scale and mask.</param>
    /// <param name="settings">ε (required by approximate algorithms: without it the outcome is a
    /// <see cref="RefusalReason.EpsilonMissing"/> refusal), threads, cancellation, progress; null = defaults.</param>
    /// <returns>A plan whose execution satisfies ‖T − Att(Q, K, V)‖∞ ≤ ε (approximate algorithms) or is exact up to
    /// rounding (exact ones), or the typed refusal of the first head that cannot be certified.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="problem"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The settings ask for a negative thread count.</exception>
    public PlanOutcome<T> TryPlan<T>(AttentionProblem<T> problem, AttentionSettings? settings = null)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        settings ??= new AttentionSettings();
        settings.Validate();
        var clock = Stopwatch.StartNew();
        double epsilon = double.NaN;
        if (RequiresEpsilon)
        {
            if (settings.Epsilon is null)
                return new(null, new Refusal(Name, RefusalReason.EpsilonMissing,
                    $"no ε was given: '{Name}' is approximate and certifies ‖T − Att‖∞ ≤ ε, so it needs one (there is no default); give ε, or use 'exact'.", ["exact"]));
            if (settings.ValidEpsilon is null)
                return new(null, new Refusal(Name, RefusalReason.EpsilonInvalid, $"ε must be a positive finite number (got {settings.Epsilon}).", []));
            epsilon = settings.RequiredEpsilon;
        }
        else if (settings.ValidEpsilon is double e) epsilon = e;
        else if (settings.Epsilon is not null && !IsExact)
            return new(null, new Refusal(Name, RefusalReason.EpsilonInvalid, $"ε must be a positive finite number (got {settings.Epsilon}).", []));

        // Mask semantics an approximate algorithm cannot honour (bias, boolean mask, window, …): refused before any work.
        if (MaskSupport.Refusal(this, problem) is { } unsupported) return new(null, unsupported);
        var notes = new List<string>();
        if (settings.ThreadsClamped) notes.Add($"threads: {settings.Threads} asked, {settings.EffectiveThreads} used (the machine has {Environment.ProcessorCount} processors).");
        var (planned, exponent) = RescaleValues(problem);
        if (exponent != 0)
        {
            notes.Add($"V was scaled by 2^{-exponent} (exactly) for the computation: ‖V‖∞ = {problem.VMax:G3} is near the float64 limit; the output and bound were scaled back.");
            if (!double.IsNaN(epsilon)) epsilon = Math.ScaleB(epsilon, -exponent);
        }

        int threads = settings.EffectiveThreads, heads = problem.Heads;
        bool parallelHeads = heads >= threads && threads > 1;
        var ctx = new PlanningContext(settings, epsilon, parallelHeads ? 1 : threads);
        var plans = new HeadPlan?[heads];
        var refusals = new Refusal?[heads];
        var failures = new ExceptionDispatchInfo?[heads];
        void PlanOne(int h)
        {
            try { plans[h] = planned.KeyCount(h) == 0 ? NoKeys(planned.Head(h), ctx) : PlanHead(planned.Head(h), ctx); }
            catch (AttentionRefusedException r) { refusals[h] = r.Refusal with { Head = heads > 1 ? h : -1, Detail = ScaledDetail(r.Refusal.Detail, exponent) }; }
            catch (Exception x) { failures[h] = ExceptionDispatchInfo.Capture(x); }
        }
        if (parallelHeads)
            Parallel.For(0, heads, new ParallelOptions { MaxDegreeOfParallelism = threads, CancellationToken = settings.Cancellation }, PlanOne);
        else
            for (int h = 0; h < heads; h++) { settings.Cancellation.ThrowIfCancellationRequested(); PlanOne(h); }
        foreach (var f in failures) f?.Throw();
        foreach (var r in refusals) if (r is not null) return new(null, r);
        return new(new AttentionPlan<T>(this, problem, planned, exponent, settings, plans!, clock.Elapsed, notes), null);
    }

    /// <summary>Plans every head or throws <see cref="AttentionRefusedException"/> with the typed refusal.</summary>
    /// <param name="problem">The problem (see <see cref="TryPlan{T}"/>).</param>
    /// <param name="settings">ε, threads, cancellation, progress; null = defaults.</param>
    /// <exception cref="AttentionRefusedException">ε cannot be certified (or is missing for an approximate
    /// algorithm); <see cref="AttentionRefusedException.Refusal"/> carries the reason code and alternatives.</exception>
    public AttentionPlan<T> Plan<T>(AttentionProblem<T> problem, AttentionSettings? settings = null)
        where T : unmanaged, IBinaryFloatingPointIeee754<T> => TryPlan(problem, settings).PlanOrThrow();

    /// <summary>Plans and executes into a new array. Throws <see cref="AttentionRefusedException"/> when the requested ε
    /// cannot be certified.</summary>
    /// <param name="problem">Q [heads, n, d], K [heads, m, d], V [heads, m, dv], row-major.</param>
    /// <param name="settings">ε (required by approximate algorithms), threads, cancellation, progress; null = defaults.</param>
    /// <returns>The output T ([heads, n, dv], row-major) and its certificate: ‖T − Att‖∞ ≤ ErrorBound ≤ ε.</returns>
    /// <exception cref="AttentionRefusedException">ε cannot be certified, before or after the run (rounding measured
    /// during the run may leave the bound above ε); no output is returned.</exception>
    /// <exception cref="OperationCanceledException">The settings' token was cancelled.</exception>
    public AttentionResult<T> Compute<T>(AttentionProblem<T> problem, AttentionSettings? settings = null)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        using var plan = Plan(problem, settings);
        return plan.Execute();
    }

    /// <summary>Plans and executes into <paramref name="destination"/> ([heads, n, dv], row-major).</summary>
    /// <param name="problem">Q [heads, n, d], K [heads, m, d], V [heads, m, dv], row-major.</param>
    /// <param name="destination">The caller's buffer of exactly heads·n·dv elements; element (h, i, c) at (h·n + i)·dv + c.</param>
    /// <param name="settings">ε (required by approximate algorithms), threads, cancellation, progress; null = defaults.</param>
    /// <returns>The certificate of what was written: ‖T − Att‖∞ ≤ ErrorBound (≤ ε for approximate algorithms).</returns>
    /// <exception cref="ArgumentException"><paramref name="destination"/> has the wrong length.</exception>
    /// <exception cref="AttentionRefusedException">ε cannot be certified; when thrown after the run the destination
    /// holds an uncertified result and must not be used.</exception>
    /// <exception cref="OperationCanceledException">The settings' token was cancelled; the destination's contents are
    /// unspecified.</exception>
    public ErrorCertificate Compute<T>(AttentionProblem<T> problem, Span<T> destination, AttentionSettings? settings = null)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        using var plan = Plan(problem, settings);
        return plan.Execute(destination);
    }

    /// <summary>Plans one head: checks that the algorithm can certify ε, chooses its parameters, counts its work.
    /// Refuses by throwing <see cref="AttentionRefusedException"/> (caught at the plan boundary and returned typed).</summary>
    protected abstract HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>;

    /// <summary>Computes one head into <paramref name="output"/> (n×dv, row-major) following <paramref name="plan"/>.
    /// May refuse after the fact (rounding measured during the run above ε) by throwing <see cref="AttentionRefusedException"/>.</summary>
    protected abstract HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>;

    /// <summary>Plans <paramref name="head"/> with this algorithm as a component of another (the planner, reductions).</summary>
    internal HeadPlan PlanHeadFor<T>(AttentionHead<T> head, PlanningContext context) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        PlanHead(head, context);

    /// <summary>Executes <paramref name="plan"/> (made by this algorithm) as a component of another (the planner).</summary>
    internal HeadExecution ExecuteHeadFor<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
        where T : unmanaged, IBinaryFloatingPointIeee754<T> => ExecuteHead(plan, head, output, context);

    /// <summary>The plan of a head whose batch element has no key (key length 0): every row sees nothing, the output is 0
    /// exactly, whatever the algorithm.</summary>
    private HeadPlan NoKeys<T>(AttentionHead<T> head, PlanningContext context) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        Planned(head, context, new TrivialParameters("no key exists for this head (key length 0): every row is zero"), [], CostEstimate.Zero);

    /// <summary>The plan record a subclass returns from <see cref="PlanHead{T}"/>.</summary>
    protected HeadPlan Planned<T>(AttentionHead<T> head, PlanningContext context, AlgorithmParameters parameters, IReadOnlyList<ErrorTerm> budget,
        CostEstimate cost, object? state = null) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        new(head.Index, this, Name, parameters, budget, cost, cost.Seconds(context.Settings.EffectiveRates, context.Threads), state, []);

    /// <summary>A plan of another algorithm's head re-issued under this algorithm (the planner's choice), with the
    /// alternatives it considered.</summary>
    internal HeadPlan Wrap(HeadPlan chosen, IReadOnlyList<PlanCandidate> candidates) =>
        new(chosen.Head, this, chosen.Algorithm, chosen.Parameters, chosen.Budget, chosen.Cost, chosen.PredictedSeconds, chosen, candidates);

    internal ErrorCertificate ExecutePlan<T>(AttentionPlan<T> plan, Span<T> destination) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var problem = plan.Planned;
        if (destination.Length != problem.OutputLength)
            ThrowHelper.Argument(nameof(destination), $"the destination has {destination.Length} elements; [heads, n, dv] = [{problem.Heads}, {problem.N}, {problem.Dv}] needs {problem.OutputLength}.");
        var settings = plan.Settings;
        settings.Cancellation.ThrowIfCancellationRequested();
        int threads = settings.EffectiveThreads, heads = problem.Heads, nd = problem.N * problem.Dv;
        bool parallelHeads = heads >= threads && threads > 1;
        double epsilon = settings.ValidEpsilon is double e ? Math.ScaleB(e, -plan.ValueExponent) : double.NaN;
        var results = new HeadExecution?[heads];
        var refusals = new Refusal?[heads];
        var failures = new ExceptionDispatchInfo?[heads];
        var progress = settings.Progress is null ? null : new HeadProgress(settings.Progress, heads);
        var clock = Stopwatch.StartNew();
        unsafe
        {
            fixed (T* dst = destination)
            {
                nint basePtr = (nint)dst;
                void RunOne(int h)
                {
                    try
                    {
                        settings.Cancellation.ThrowIfCancellationRequested();
                        var hp = plan.Heads[h];
                        var ctx = new ExecutionContext(settings, epsilon, parallelHeads ? 1 : threads, progress?.For(h));
                        var dst = new Span<T>((T*)basePtr + (long)h * nd, nd);
                        if (problem.KeyCount(h) == 0) { dst.Clear(); results[h] = new HeadExecution([], hp.Parameters); }
                        else results[h] = hp.Owner.ExecuteHead(hp, problem.Head(h), dst, ctx);
                        progress?.Done(h);
                    }
                    catch (AttentionRefusedException r) { refusals[h] = r.Refusal with { Head = heads > 1 ? h : -1 }; }
                    catch (Exception x) { failures[h] = ExceptionDispatchInfo.Capture(x); }
                }
                if (parallelHeads)
                    Parallel.For(0, heads, new ParallelOptions { MaxDegreeOfParallelism = threads }, RunOne);
                else
                    for (int h = 0; h < heads; h++) RunOne(h);
            }
        }
        clock.Stop();
        settings.Cancellation.ThrowIfCancellationRequested();
        foreach (var f in failures) if (f?.SourceException is OperationCanceledException) f.Throw();
        foreach (var f in failures) f?.Throw();
        foreach (var r in refusals) if (r is not null) throw new AttentionRefusedException(r with { Detail = ScaledDetail(r.Detail, plan.ValueExponent) });

        double factor = Math.ScaleB(1, plan.ValueExponent);
        if (plan.ValueExponent != 0)
            for (int i = 0; i < destination.Length; i++) destination[i] *= T.CreateTruncating(factor);
        var certs = new HeadCertificate[heads];
        var notes = new List<string>(plan.Notes);
        int worst = 0;
        for (int h = 0; h < heads; h++)
        {
            var r = results[h]!;
            var hp = plan.Heads[h];
            IReadOnlyList<ErrorTerm> budget = r.Budget;
            if (plan.ValueExponent != 0)
                budget = [.. ErrorTerms.Scale(budget, factor), new ErrorTerm("V rescaling (subnormal rounding of scaled V)", Math.ScaleB(1, plan.ValueExponent - 1074))];
            double bound = ErrorTerms.Sum(budget);
            certs[h] = new HeadCertificate(h, r.Algorithm ?? hp.Algorithm, r.Parameters, budget, bound, hp.PredictedSeconds, hp.Candidates);
            if (r.Note is not null) notes.Add(heads > 1 ? $"head {h}: {r.Note}" : r.Note);
            if (bound > certs[worst].ErrorBound) worst = h;
        }
        double total = heads == 0 ? 0 : certs[worst].ErrorBound;
        if (!IsExact && settings.Epsilon is not null && !(total <= settings.Epsilon))
            ThrowHelper.InvalidOperation($"{Name} produced a certificate bound {total:G4} above the requested ε = {settings.Epsilon:G4}; this is a bug.");
        return new ErrorCertificate
        {
            Algorithm = Name,
            Epsilon = settings.ValidEpsilon,
            ErrorBound = total,
            Budget = heads == 0 ? [] : certs[worst].Budget,
            Elapsed = clock.Elapsed,
            PlanningTime = plan.PlanningTime,
            PredictedSeconds = plan.PredictedSeconds,
            Threads = threads,
            Heads = certs,
            Notes = notes,
        };
    }

    /// <summary>
    /// When ‖V‖∞ is so large that sums of m values (or an approximate algorithm's budget arithmetic) could overflow,
    /// plans on a copy of V scaled by the exact power of two 2^−k that brings ‖V‖∞ into [1, 2); attention is linear
    /// in V, so output and bound are multiplied back by 2^k. Returns the problem unchanged (k = 0) otherwise.
    /// </summary>
    private static (AttentionProblem<T> Problem, int Exponent) RescaleValues<T>(AttentionProblem<T> problem)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double vMax = problem.VMax;
        if (vMax == 0) return (problem, 0);
        int e = Math.ILogB(vMax);
        if (e + Math.Log2(problem.M + 1.0) <= 600) return (problem, 0);
        var src = problem.V.Span;
        var scaled = new T[src.Length];
        var f = T.CreateTruncating(Math.ScaleB(1, -e));
        for (int i = 0; i < src.Length; i++) scaled[i] = src[i] * f;
        return (problem.WithValues(scaled), e);
    }

    private static string ScaledDetail(string detail, int exponent) => exponent == 0 ? detail :
        $"{detail} (figures above are in units of V scaled by 2^{-exponent}: multiply ε values by 2^{exponent} = {Math.ScaleB(1, exponent):G3})";

    /// <summary>Maps per-head fractions to the whole problem's fraction.</summary>
    private sealed class HeadProgress(IProgress<double> sink, int heads)
    {
        private readonly double[] _done = new double[heads];
        private readonly object _gate = new();

        public IProgress<double> For(int h) => new Sink(this, h);
        public void Done(int h) => Set(h, 1);

        private void Set(int h, double f)
        {
            double total;
            lock (_gate)
            {
                _done[h] = Math.Max(_done[h], f);
                total = _done.Sum() / _done.Length;
            }
            sink.Report(total);
        }

        private sealed class Sink(HeadProgress owner, int h) : IProgress<double>
        {
            public void Report(double value) => owner.Set(h, value);
        }
    }
}
