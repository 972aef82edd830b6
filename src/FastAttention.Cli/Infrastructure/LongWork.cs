using Spectre.Console;

namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// Runs a computation that may take long. When stderr is a terminal and the work is still running after
/// <see cref="CliContext.ProgressDelay"/>, a Spectre.Console progress bar appears on stderr, fed by the <see cref="IProgress{T}"/> the
/// work hands to the library (<see cref="AttentionSettings.Progress"/>); until the library reports a fraction the bar
/// is indeterminate and shows the elapsed time. Otherwise the work just runs. The bar is cleared when it ends.
/// </summary>
internal static class LongWork
{
    public static T Run<T>(string description, Func<IProgress<double>, T> work)
    {
        var context = CliContext.Current;
        var sink = new LatestFraction();
        if (!context.Interactive) return work(sink);
        var task = Task.Run(() => work(sink)); // the invocation context flows into the task
        // A zero delay shows the bar whatever happens (work that finished before the first check would otherwise race it).
        if (context.ProgressDelay > TimeSpan.Zero && task.Wait(context.ProgressDelay)) return task.GetAwaiter().GetResult();
        context.FlushNotes(); // the user is watching: say now what was done on their behalf
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(context.Error),
            Interactive = InteractionSupport.Yes,
        });
        console.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
            .Start(p =>
            {
                var bar = p.AddTask(Markup.Escape(description), maxValue: 1);
                bar.IsIndeterminate = true;
                while (!task.Wait(100))
                    if (sink.Value is { } f)
                    {
                        bar.IsIndeterminate = false;
                        bar.Value = Math.Clamp(f, 0, 1);
                    }
                bar.Value = 1;
            });
        return task.GetAwaiter().GetResult();
    }

    /// <summary>Keeps the latest fraction reported (from any thread).</summary>
    private sealed class LatestFraction : IProgress<double>
    {
        private double _value = double.NaN;

        public double? Value => double.IsNaN(Volatile.Read(ref _value)) ? null : Volatile.Read(ref _value);

        public void Report(double value)
        {
            if (double.IsFinite(value)) Volatile.Write(ref _value, value);
        }
    }
}
