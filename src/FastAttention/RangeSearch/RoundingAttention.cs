using System.Numerics;

namespace FastAttention.RangeSearch;

/// <summary>
/// The rounding scheme of Gupta et al. Section 1.1 (Figure 1), the paper's warm-up for d = 1: relevant keys
/// (Definition 3.2) are bucketed by logit into intervals of width log(1 + ε′) below the maximum; every key of bucket b
/// gets the rounded logit M − b·log(1 + ε′) (so x ≤ x̄ ≤ x + log(1 + ε′) and e^{x̄} is a (1 + ε′)-approximation of eˣ),
/// and each bucket is answered from prefix sums of V over the sorted keys in O(log m). Buckets are visited only where
/// keys are, so a query costs O(min(#relevant keys, T/log(1 + ε′))·log m) — Õ(n·B/ε) in the worst case, as in the paper.
/// Prefix sums are kept as double-doubles (compensated), so a bucket's sum does not inherit the rounding of the whole
/// prefix. Immutable per call.
/// </summary>
public sealed class RoundingAttention : RangeSearchFamily
{
    /// <summary><c>"rounding"</c>: the Section 1.1 logit-rounding scheme for d = 1, certified within ε.</summary>
    public override string Name => "rounding";

    /// <summary>Refuses (<see cref="RefusalReason.HeadDimension"/>) unless d = 1.</summary>
    protected override void CheckHead<T>(AttentionHead<T> head)
    {
        if (head.D != 1)
            ThrowHelper.Refused(Name, RefusalReason.HeadDimension, $"the rounding scheme (Section 1.1) needs head dimension d = 1 (got d = {head.D}); use 'range' for d ≤ {MaxRangeDimension} or 'lowrank'.", "range", "lowrank", "exact");
    }

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        var (q, k, v) = head.ToDouble();
        int n = head.N, m = head.M, dv = head.Dv;
        double s = head.Scale, vMax = RangeErrorBudget.MaxAbs(v);
        if (vMax == 0)
        {
            output.Clear();
            return new HeadExecution([], new TrivialParameters("V = 0: output 0 exactly"));
        }
        double logitBound = RangeErrorBudget.LogitBound(q, n, k, m, 1, s);
        var budget = new RangeErrorBudget(Name, context.Epsilon, vMax, m, 1, logitBound, typeof(T) == typeof(float));
        double epsPrime = budget.PolynomialError, bucket = Math.Log(1 + epsPrime);
        double width = budget.Relevant.Width + 8 * RangeErrorBudget.U * logitBound;

        // Sort once; prefix sums of V (double-double) and of counts (exact).
        var keys = (double[])k.Clone();
        var order = new int[m];
        for (int j = 0; j < m; j++) order[j] = j;
        Array.Sort(keys, order);
        var preHi = new double[(m + 1) * dv];
        var preLo = new double[(m + 1) * dv];
        for (int col = 0; col < dv; col++)
        {
            double sum = 0, comp = 0;
            for (int j = 0; j < m; j++)
            {
                double x = v[order[j] * dv + col], t = sum + x;
                comp += Math.Abs(sum) >= Math.Abs(x) ? (sum - t) + x : (x - t) + sum;
                sum = t;
                preHi[(j + 1) * dv + col] = sum; preLo[(j + 1) * dv + col] = comp;
            }
        }

        var result = new double[n * dv];
        var stats = ForQueries(n, context.Threads, () => new QueryStats(), (from, to, st) =>
        {
            var acc = new double[dv + 1];
            for (int i = from; i < to; i++)
            {
                double qi = q[i], a = s * qi;
                int lo, hi, arg;
                if (a > 0) { arg = m - 1; lo = FirstAtLeast(keys, a, a * keys[arg] - width); hi = m; }
                else if (a < 0) { arg = 0; lo = 0; hi = FirstBelow(keys, a, a * keys[arg] - width); }
                else { arg = 0; lo = 0; hi = m; }
                double yHi = qi * keys[arg], yLo = Math.FusedMultiplyAdd(qi, keys[arg], -yHi);
                Array.Clear(acc);
                int groups = 0;
                // Walk from the maximum towards the threshold, one nonempty bucket at a time.
                int p = a > 0 ? hi - 1 : lo;
                while (a > 0 ? p >= lo : p < hi)
                {
                    double depth = -s * Diff(qi, keys[p], yHi, yLo);       // M − x ≥ 0 (up to rounding)
                    double b = Math.Max(0, Math.Floor(depth / bucket));
                    double edge = (b + 1) * bucket;                         // keys with M − x < edge share bucket b
                    int g, e;
                    if (a > 0)
                    {
                        int l = lo, r = p;                                  // smallest g in [lo, p] with depth(g) < edge
                        while (l < r) { int mid = (l + r) >>> 1; if (-s * Diff(qi, keys[mid], yHi, yLo) < edge) r = mid; else l = mid + 1; }
                        g = l; e = p + 1; p = g - 1;
                    }
                    else
                    {
                        int l = p + 1, r = hi;                              // first position after p with depth ≥ edge
                        while (l < r) { int mid = (l + r) >>> 1; if (-s * Diff(qi, keys[mid], yHi, yLo) >= edge) r = mid; else l = mid + 1; }
                        g = p; e = l; p = e;
                    }
                    double w = Math.Exp(-b * bucket);
                    acc[0] += w * (e - g);
                    for (int col = 0; col < dv; col++)
                    {
                        double sum = (preHi[e * dv + col] - preHi[g * dv + col]) + (preLo[e * dv + col] - preLo[g * dv + col]);
                        acc[col + 1] += w * sum;
                    }
                    groups++;
                }
                double inv = 1 / acc[0];
                for (int col = 0; col < dv; col++) result[i * dv + col] = acc[col + 1] * inv;
                st.Queries++; st.NodesVisited += groups; st.DirectKeys += hi - lo;
                st.MaxTerms = Math.Max(st.MaxTerms, groups);
            }
        });
        for (int i = 0; i < result.Length; i++) Store(output, i, result[i]);
        // Rounding: bucket sums err by u·|sum| + 3m²u²‖V‖∞ (double-double prefixes), the bucket weight e^{−b·w} by the
        // logit rounding already in the budget plus u·T, and the accumulation of G buckets by G·u.
        double u = RangeErrorBudget.U;
        double rho = 1.1 * (2 * u + u * width + (stats.MaxTerms + 2) * (u + 3.0 * m * m * u * u));
        var terms = budget.Certify(Name, budget.Terms(epsPrime, rho));
        return new HeadExecution(terms, new RangeFamilyParameters
        {
            BucketWidth = bucket, EpsilonPrime = epsPrime, ThresholdT = budget.Relevant.Width,
            BucketsPerQuery = stats.PerQuery(stats.NodesVisited), RelevantKeysPerQuery = stats.PerQuery(stats.DirectKeys),
            MaxBuckets = stats.MaxTerms, DiscardBound = budget.Relevant.OutputError(vMax), RoundingRho = rho,
        });
    }

    private static int FirstAtLeast(double[] keys, double a, double thr)
    {
        int l = 0, r = keys.Length;
        while (l < r) { int mid = (l + r) >>> 1; if (a * keys[mid] >= thr) r = mid; else l = mid + 1; }
        return l;
    }

    private static int FirstBelow(double[] keys, double a, double thr)
    {
        int l = 0, r = keys.Length;
        while (l < r) { int mid = (l + r) >>> 1; if (a * keys[mid] < thr) r = mid; else l = mid + 1; }
        return l;
    }

    /// <summary>q·k − (yHi + yLo) with the product split exactly (as in VectorAttention).</summary>
    private static double Diff(double q, double k, double yHi, double yLo)
    {
        double p = q * k, e = Math.FusedMultiplyAdd(q, k, -p);
        double t = p - yHi, bp = t + yHi;
        double err = (p - bp) + (-yHi - (t - bp));
        return t + (err + e - yLo);
    }
}
