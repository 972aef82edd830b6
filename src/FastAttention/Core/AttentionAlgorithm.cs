using System.Diagnostics;
using System.Numerics;

namespace FastAttention;

/// <summary>
/// Base of every attention algorithm. It validates settings, times the run, runs heads in parallel and assembles
/// the certificate; a subclass implements one head. Algorithms never know about the CLI.
/// </summary>
public abstract class AttentionAlgorithm
{
    /// <summary>Short stable name used by the CLI and reports (e.g. "exact", "polynomial").</summary>
    public abstract string Name { get; }

    /// <summary>True when the output is exact up to floating-point rounding (certificate bound 0).</summary>
    public abstract bool IsExact { get; }

    /// <summary>Computes attention for every head. Throws <see cref="AttentionRefusedException"/> when the
    /// requested ε cannot be certified.</summary>
    public AttentionResult<T> Compute<T>(AttentionProblem<T> problem, AttentionSettings? settings = null)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        settings ??= new AttentionSettings();
        settings.Validate(!IsExact, Name);
        MaskSupport.Check(this, problem);
        if (!IsExact) Validate(problem, settings);
        var output = new T[problem.OutputLength];
        var sw = Stopwatch.StartNew();
        int threads = settings.EffectiveThreads;
        var reports = new HeadReport[problem.Heads];
        // A head whose batch element has no keys (key length 0) sees nothing: its output stays zero.
        HeadReport Head(int h, AttentionSettings s) => problem.KeyCount(h) == 0 ? HeadReport.Exact
            : ComputeHead(problem.Head(h), output.AsSpan(h * problem.N * problem.Dv, problem.N * problem.Dv), s);
        if (problem.Heads == 1 || threads == 1)
        {
            for (int h = 0; h < problem.Heads; h++) reports[h] = Head(h, settings);
        }
        else
        {
            // Heads in parallel, one thread each; the per-head kernel then runs single-threaded.
            var perHead = settings with { Threads = 1 };
            Parallel.For(0, problem.Heads, new ParallelOptions { MaxDegreeOfParallelism = threads }, h => reports[h] = Head(h, perHead));
        }
        sw.Stop();
        double bound = 0;
        foreach (var r in reports) bound = Math.Max(bound, r.ErrorBound);
        if (!IsExact && !(bound <= settings.Epsilon))
            ThrowHelper.InvalidOperation($"{Name} produced a certificate bound {bound:G4} above the requested ε = {settings.Epsilon:G4}; this is a bug.");
        var cert = new ErrorCertificate
        {
            Algorithm = Name,
            Epsilon = IsExact ? 0 : settings.Epsilon,
            ErrorBound = bound,
            Elapsed = sw.Elapsed,
            Threads = threads,
            Parameters = reports[0].Parameters,
        };
        return new AttentionResult<T>(output, cert);
    }

    /// <summary>Checks that the algorithm can run on this problem before any work (refuse early, clearly).</summary>
    protected virtual void Validate<T>(AttentionProblem<T> problem, AttentionSettings settings)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
    }

    /// <summary>Computes one head into <paramref name="output"/> (n×dv, row-major).</summary>
    protected abstract HeadReport ComputeHead<T>(AttentionHead<T> head, Span<T> output, AttentionSettings settings)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>;
}
