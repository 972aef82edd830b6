using System.Numerics;
using FastAttention.Exact;

namespace FastAttention.Cli.Infrastructure;

/// <summary>Error measurement against the float64 reference, on all rows or a sample of them.</summary>
internal static class Measure
{
    /// <summary>max over sampled rows (head 0) of |output − reference|.</summary>
    public static double MaxAbsError<T>(AttentionProblem<T> p, ReadOnlySpan<T> output, int[] rows)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var reference = ReferenceAttention.ComputeRows(p, 0, rows);
        double err = 0;
        for (int r = 0; r < rows.Length; r++)
            for (int c = 0; c < p.Dv; c++)
                err = Math.Max(err, Math.Abs(double.CreateTruncating(output[rows[r] * p.Dv + c]) - reference[r * p.Dv + c]));
        return err;
    }

    /// <summary>Elapsed seconds of the fastest of <paramref name="repeats"/> runs.</summary>
    public static double BestSeconds(Action run, int repeats)
    {
        double best = double.PositiveInfinity;
        for (int i = 0; i < repeats; i++)
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            run();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return best;
    }
}
