namespace FastAttention.Cli.Infrastructure;

/// <summary>The certificate as typed report parts (shared by <c>run --report</c>, <c>plan --json</c>, <c>bench planner</c>
/// and the demo).</summary>
internal static class CertificateReport
{
    /// <summary>Error terms as name → value, in order (they add up to the bound).</summary>
    public static IReadOnlyList<KeyValuePair<string, object?>> Terms(IReadOnlyList<ErrorTerm> terms) =>
        [.. terms.Select(t => new KeyValuePair<string, object?>(t.Name, t.Value))];

    /// <summary>An algorithm's typed parameters as name → value: camelCase names in declaration order, the ones that
    /// do not apply to the algorithm (null) left out.</summary>
    public static IReadOnlyList<KeyValuePair<string, object?>> Parameters(AlgorithmParameters? p) =>
        p is null ? [] : [.. p.Describe().Where(kv => kv.Value is not null)];

    public static CandidateReport Candidate(PlanCandidate c) =>
        new(c.Algorithm, c.Certifiable, c.Refusal?.Reason.ToString(), c.Refusal?.Detail, c.PredictedSeconds, c.ErrorBound);

    public static IReadOnlyList<CandidateReport> Candidates(IReadOnlyList<PlanCandidate> candidates) => [.. candidates.Select(Candidate)];

    public static IReadOnlyList<HeadCertificateReport> Heads(ErrorCertificate c) =>
    [
        .. c.Heads.Select(h => new HeadCertificateReport(h.Head, h.Algorithm, h.ErrorBound, h.PredictedSeconds, Terms(h.Budget),
            Parameters(h.Parameters), Candidates(h.Candidates))),
    ];
}
