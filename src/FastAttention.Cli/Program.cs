using System.CommandLine;
using FastAttention.Cli.Infrastructure;

namespace FastAttention.Cli;

public static class Program
{
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Entry point used by tests too. Exit codes: 0 success, 2 bad input or usage, 1 internal failure.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = CommandTree.Build();
        ParseResult parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            stderr.WriteLine($"fastattn: {parse.Errors[0].Message} (see 'fastattn --help')");
            return ExitCodes.Usage;
        }
        var config = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false };
        try
        {
            return parse.Invoke(config);
        }
        catch (Exception e) when (ExitCodes.IsUserError(e))
        {
            stderr.WriteLine($"fastattn: {ExitCodes.Describe(e)}");
            return ExitCodes.Usage;
        }
        catch (Exception e)
        {
            stderr.WriteLine($"fastattn: internal error: {e}");
            return ExitCodes.Internal;
        }
    }
}
