namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// What one invocation of the tool runs with: its output streams, the Ctrl-C token, whether stderr is a terminal
/// (progress bars) and whether internal errors show their stack trace. Flows with the invocation (async-local), so
/// that in-process runs in parallel (the tests) do not share it.
/// </summary>
internal sealed class CliContext
{
    private static readonly AsyncLocal<CliContext?> Ambient = new();

    public CliContext(TextWriter output, TextWriter error, CancellationToken cancellation, bool interactive)
    {
        Output = output; Error = error; Cancellation = cancellation; Interactive = interactive;
    }

    /// <summary>The current invocation's context (a silent one outside an invocation).</summary>
    public static CliContext Current => Ambient.Value ?? new CliContext(TextWriter.Null, TextWriter.Null, CancellationToken.None, false);

    public TextWriter Output { get; }
    public TextWriter Error { get; }
    /// <summary>Set by Ctrl-C: commands pass it to the library and check it before writing anything.</summary>
    public CancellationToken Cancellation { get; }
    /// <summary>stderr is a terminal: show progress bars.</summary>
    public bool Interactive { get; }
    /// <summary>How long a computation runs before its progress bar appears (tests use zero).</summary>
    public TimeSpan ProgressDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Makes <paramref name="context"/> current until the result is disposed.</summary>
    public static IDisposable Enter(CliContext context)
    {
        var previous = Ambient.Value;
        Ambient.Value = context;
        return new Restore(previous);
    }

    private readonly List<string> _notes = [];

    /// <summary>One line on stderr saying what the tool did on the user's behalf (a clamp, a precision choice). Held
    /// back until the work starts (<see cref="FlushNotes"/>) and dropped if the input is refused first, so that a
    /// refused run still prints exactly one line.</summary>
    public void Note(string message)
    {
        lock (_notes) _notes.Add($"fastattn: {ExitCodes.OneLine(message)}");
    }

    /// <summary>Prints the notes held back so far.</summary>
    public void FlushNotes()
    {
        lock (_notes)
        {
            foreach (var n in _notes) Error.WriteLine(n);
            _notes.Clear();
        }
    }

    /// <summary>Drops the notes held back (the run was refused or failed before doing anything).</summary>
    public void DropNotes()
    {
        lock (_notes) _notes.Clear();
    }

    /// <summary>One line on stderr saying what a long command (demo, bench, experiment) is doing now.</summary>
    public void Status(string message)
    {
        FlushNotes();
        Error.WriteLine($"fastattn: {ExitCodes.OneLine(message)}");
    }

    /// <summary>Throws <see cref="OperationCanceledException"/> once Ctrl-C was pressed.</summary>
    public void ThrowIfCancelled() => Cancellation.ThrowIfCancellationRequested();

    private sealed class Restore(CliContext? previous) : IDisposable
    {
        public void Dispose() => Ambient.Value = previous;
    }
}
