// <example:usings>
using FastAttention;
using FastAttention.Exact;
using FastAttention.Polynomial;
using System.Numerics.Tensors;
// </example:usings>

namespace FastAttention.Tests.Docs;

/// <summary>
/// The worked examples of docs/library.md. The text between <c>// &lt;example:NAME&gt;</c> and
/// <c>// &lt;/example:NAME&gt;</c> is the code block the document shows under <c>&lt;!-- example: NAME --&gt;</c>;
/// <see cref="LibraryDocTests"/> checks that the two are identical and runs these methods, so the document compiles,
/// runs and gives the results it claims.
/// </summary>
public static class LibraryExamples
{
    public static (AttentionProblem<float> Problem, float[] Output, ErrorCertificate Certificate) ExactIntoYourBuffer()
    {
        // <example:exact-buffer>
        int n = 256, m = 192, d = 64, dv = 32;
        var rng = new Random(1);
        float[] Uniform(int count) => [.. Enumerable.Range(0, count).Select(_ => (float)(2 * rng.NextDouble() - 1))];
        float[] q = Uniform(n * d), k = Uniform(m * d), v = Uniform(m * dv);   // row-major [n, d], [m, d], [m, dv]

        // Wraps the arrays (no copy); s = 1/√d unless you pass scale:, no mask unless causal: true.
        var problem = new AttentionProblem<float>(q, k, v, n, m, d, dv);

        // Plan once, execute into your own buffer as often as you like: the output is [heads, n, dv] row-major.
        // Dispose the plan when done: the range family's plans hold their moments in pooled memory, which Dispose hands to
        // the next plan (Compute, which plans and executes once, disposes its own plan).
        using AttentionPlan<float> plan = new FlashAttention().Plan(problem);
        float[] output = new float[problem.OutputLength];
        ErrorCertificate certificate = plan.Execute(output);
        // certificate.ErrorBound: the kernel's rounding bound; certificate.Elapsed, .Threads: how it ran.
        // </example:exact-buffer>
        return (problem, output, certificate);
    }

    public static (AttentionProblem<double> Small, AttentionResult<double> Fast, AttentionProblem<double> Large,
        AttentionResult<double> Fallback, List<Refusal> Refusals) CertifiedWithARefusalHandled()
    {
        // <example:certified>
        var rng = new Random(2);
        double[] Uniform(int count, double bound) => [.. Enumerable.Range(0, count).Select(_ => (2 * rng.NextDouble() - 1) * bound)];
        int n = 4096, d = 2;
        // Small entries (|q|, |k| ≤ 1): the polynomial method's regime. Large ones (≤ 30): the logits span ±450.
        var small = new AttentionProblem<double>(Uniform(n * d, 1), Uniform(n * d, 1), Uniform(n * d, 1), n, n, d, d, scale: 0.25);
        var large = new AttentionProblem<double>(Uniform(n * d, 30), Uniform(n * d, 30), Uniform(n * d, 1), n, n, d, d, scale: 0.25);

        // ε has no default: an approximate algorithm without one refuses (RefusalReason.EpsilonMissing).
        var settings = new AttentionSettings { Epsilon = 1e-4 };
        var polynomial = new PolynomialAttention();
        var refusals = new List<Refusal>();

        AttentionResult<double> Certified(AttentionProblem<double> problem)
        {
            PlanOutcome<double> outcome = polynomial.TryPlan(problem, settings);   // a plan, or a typed refusal
            if (outcome.Refusal is { } refusal)
            {
                // Branch on the code, never on the text. Detail explains with the numbers that decided;
                // Alternatives names algorithms that could serve instead.
                refusals.Add(refusal);
                if (refusal.Reason is RefusalReason.EpsilonMissing or RefusalReason.EpsilonInvalid)
                    throw new AttentionRefusedException(refusal);                // the caller's mistake: report it
                outcome = new FlashAttention().TryPlan(problem, settings);        // exact always plans
            }
            // Execution may still refuse (rounding measured during the run above ε): that throws.
            return outcome.PlanOrThrow().Execute();
        }

        AttentionResult<double> fast = Certified(small);      // polynomial: ‖T − Att‖∞ ≤ fast.Certificate.ErrorBound ≤ 1e-4
        AttentionResult<double> fallback = Certified(large);  // refused (Float64Reach), then computed exactly
        // </example:certified>
        return (small, fast, large, fallback, refusals);
    }

    public static (float[] Q, float[] K, float[] V, float[] Output, int B, int N, int H, int D) MultiHeadBnhd()
    {
        // <example:multi-head>
        int b = 2, n = 96, h = 4, d = 16;                  // Q, K, V as [b, n, h, d], the layout models project them in
        var rng = new Random(3);
        float[] Uniform(int count) => [.. Enumerable.Range(0, count).Select(_ => (float)(2 * rng.NextDouble() - 1))];
        float[] q = Uniform(b * n * h * d), k = Uniform(b * n * h * d), v = Uniform(b * n * h * d);

        // Tensor spans over the arrays (no copy). The kernel reads them at their strides: no transposing copy in or out.
        var query = new ReadOnlyTensorSpan<float>(q, [b, n, h, d]);
        var key = new ReadOnlyTensorSpan<float>(k, [b, n, h, d]);
        var value = new ReadOnlyTensorSpan<float>(v, [b, n, h, d]);
        float[] output = new float[b * n * h * d];                            // written as [b, n, h, d]

        // Heads run in parallel; the token cancels the computation (OperationCanceledException).
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        Attention.Exact(query, key, value, new TensorSpan<float>(output, [b, n, h, d]), AttentionLayout.Bnhd,
            causal: true, cancellationToken: cancel.Token);
        // </example:multi-head>
        return (q, k, v, output, b, n, h, d);
    }

    public static (AttentionProblem<float> Cache, float[][] Queries, float[][] Outputs) DecodeLoop()
    {
        // <example:decode-loop>
        int m = 4096, d = 64, steps = 8;                  // a KV cache of m keys; one new query per step
        var rng = new Random(4);
        float[] Uniform(int count) => [.. Enumerable.Range(0, count).Select(_ => (float)(2 * rng.NextDouble() - 1))];
        float[] k = Uniform(m * d), v = Uniform(m * d);

        // The first step checks K and V (finite values) and, on its first exact call, measures what the rounding bound
        // needs of them. The next steps share all of it: WithQueries validates only the new query.
        var step = new AttentionProblem<float>(Uniform(d), k, v, 1, m, d, d);
        var exact = new FlashAttention();
        var queries = new float[steps][];
        var outputs = new float[steps][];
        for (int t = 0; t < steps; t++)
        {
            if (t > 0) step = step.WithQueries(Uniform(d), 1);   // K and V must not change meanwhile
            queries[t] = step.Q.ToArray();
            outputs[t] = exact.Compute(step).Output;       // n = 1: keys split across threads (flash-decoding)
        }
        // </example:decode-loop>
        return (step, queries, outputs);
    }
}
