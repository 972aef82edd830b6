using System.CommandLine;
using System.CommandLine.Parsing;
using FastAttention.Cli.Infrastructure;

namespace FastAttention.Cli;

public static class Program
{
    /// <summary>Environment variable that makes internal errors print their stack trace.</summary>
    public const string DebugVariable = "FASTATTN_DEBUG";

    public static int Main(string[] args)
    {
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (cancel.IsCancellationRequested)
            {
                // A second Ctrl-C ends the process at once; no temporary file stays behind.
                OutputFiles.DeletePending();
                return;
            }
            e.Cancel = true;
            Console.Error.WriteLine("fastattn: stopping (Ctrl-C again to stop at once)…");
            cancel.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            return Run(args, Console.Out, Console.Error, cancel.Token, interactive: !Console.IsErrorRedirected);
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>Entry point used by tests too. Exit codes: 0 success, 2 bad input or usage (one line naming the
    /// option), 1 internal failure (one line; the stack trace with FASTATTN_DEBUG=1), 130 stopped by Ctrl-C.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) => Run(args, stdout, stderr, CancellationToken.None);

    /// <summary><see cref="Run(string[], TextWriter, TextWriter)"/> with a cancellation token (Ctrl-C) and whether
    /// stderr is a terminal (progress bars).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellation, bool interactive = false) =>
        Run(args, new CliContext(stdout, stderr, cancellation, interactive));

    internal static int Run(string[] args, CliContext context)
    {
        using var scope = CliContext.Enter(context);
        var stderr = context.Error;
        try
        {
            var root = CommandTree.Build();
            ParseResult parse = root.Parse(args);
            if (parse.Errors.Count > 0)
            {
                stderr.WriteLine($"fastattn: {ParseMessage(parse.Errors[0])} (see 'fastattn --help')");
                return ExitCodes.Usage;
            }
            var config = new InvocationConfiguration { Output = context.Output, Error = stderr, EnableDefaultExceptionHandler = false };
            int code = parse.Invoke(config);
            context.FlushNotes();
            return code;
        }
        catch (Exception e)
        {
            context.DropNotes();
            return Handle(e, context, Debug);
        }
    }

    /// <summary>What an exception out of a command becomes: Ctrl-C → 130; bad input or a refusal → 2 with its one
    /// line; anything else → 1 with one line, the stack trace only when <paramref name="debug"/>.</summary>
    internal static int Handle(Exception e, CliContext context, bool debug)
    {
        var stderr = context.Error;
        if (Cancelled(e, context.Cancellation))
        {
            stderr.WriteLine("fastattn: stopped by Ctrl-C; no output was written.");
            return ExitCodes.Cancelled;
        }
        if (ExitCodes.UserMessage(e) is { } message)
        {
            stderr.WriteLine($"fastattn: {message}");
            return ExitCodes.Usage;
        }
        stderr.WriteLine($"fastattn: internal error: {ExitCodes.OneLine(e.Message)} ({e.GetType().Name}). This is a bug; " +
            (debug ? "the stack trace follows." : $"set {DebugVariable}=1 to see the stack trace."));
        if (debug) stderr.WriteLine(e);
        return ExitCodes.Internal;
    }

    private static bool Debug => Environment.GetEnvironmentVariable(DebugVariable) is "1" or "true" or "yes";

    private static bool Cancelled(Exception e, CancellationToken token) =>
        token.IsCancellationRequested && (e is OperationCanceledException || e is AggregateException a && a.Flatten().InnerExceptions.All(x => x is OperationCanceledException));

    /// <summary>
    /// The parser's message, except that a value which does not convert names the option and what it needs instead
    /// of a .NET type ("--epsilon: 'abc' is not a number", not "… as expected type 'System.Nullable`1[System.Double]'").
    /// </summary>
    internal static string ParseMessage(ParseError error)
    {
        var option = error.SymbolResult switch
        {
            OptionResult o => o.Option,
            ArgumentResult { Parent: OptionResult o } => o.Option,
            _ => null,
        };
        if (option is null || !error.Message.StartsWith("Cannot parse argument", StringComparison.Ordinal)) return ExitCodes.OneLine(error.Message);
        var result = error.SymbolResult!;
        string value = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        var type = Nullable.GetUnderlyingType(option.ValueType) ?? option.ValueType;
        string what = type == typeof(int) || type == typeof(long) ? "is not an integer (or is out of range)"
            : type == typeof(double) || type == typeof(float) ? "is not a number"
            : type == typeof(bool) ? "is not true or false"
            : "is not a valid value";
        return $"{option.Name}: '{value}' {what}.";
    }
}
