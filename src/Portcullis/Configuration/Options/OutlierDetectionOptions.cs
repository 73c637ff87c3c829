using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>
/// clusters.NAME.healthCheck.outlierDetection: eject destinations whose error rate or latency is far from the
/// rest of the cluster's (Envoy's outlier detection), judged every interval on that interval's requests.
/// </summary>
internal sealed record OutlierDetectionOptions
{
    [Description("Time between evaluations; each judges the requests of the interval that just ended. Default 10s.")]
    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(10);

    [Description("How long a destination is ejected the first time; each ejection in a row adds as much again (one less for each interval the destination then passes). Default 30s.")]
    public TimeSpan BaseEjectionTime { get; init; } = TimeSpan.FromSeconds(30);

    [Description("Longest ejection, however often a destination was ejected. Default 5m.")]
    public TimeSpan MaxEjectionTime { get; init; } = TimeSpan.FromMinutes(5);

    [Description("Most destinations of the cluster out at once by passive ejection, in percent of all (at least one is allowed; the last available destination is never ejected). Default 50.")]
    public int MaxEjectionPercent { get; init; } = 50;

    [Description("Eject destinations whose success rate is more than stdevFactor standard deviations below the cluster's mean.")]
    public OutlierSuccessRateOptions? SuccessRate { get; init; }

    [Description("Eject destinations whose share of failed requests is at least threshold percent.")]
    public OutlierFailurePercentageOptions? FailurePercentage { get; init; }

    [Description("Eject destinations whose p90 latency is more than factor times the median of the destinations' p90 latencies.")]
    public OutlierLatencyOptions? Latency { get; init; }
}

internal sealed record OutlierSuccessRateOptions
{
    [Description("Requests a destination needs in an interval to be judged (and to count toward the mean). Default 100.")]
    public int MinRequests { get; init; } = 100;

    [Description("Destinations with minRequests the cluster needs before the rule runs at all. Default 5 (one outlier among N is at most √(N−1) deviations from the mean).")]
    public int MinDestinations { get; init; } = 5;

    [Description("How many standard deviations below the mean success rate a destination is ejected. Default 1.9.")]
    public double StdevFactor { get; init; } = 1.9;
}

internal sealed record OutlierFailurePercentageOptions
{
    [Description("Failed requests (5xx answers, connection failures and upstream timeouts) in percent of the destination's requests at which it is ejected. Default 85.")]
    public int Threshold { get; init; } = 85;

    [Description("Requests a destination needs in an interval to be judged. Default 50.")]
    public int MinRequests { get; init; } = 50;

    [Description("Destinations with minRequests the cluster needs before the rule runs at all. Default 3.")]
    public int MinDestinations { get; init; } = 3;
}

internal sealed record OutlierLatencyOptions
{
    [Description("A destination whose p90 latency (request sent → response headers) is more than this many times the median of the destinations' p90s is ejected. Default 3.")]
    public double Factor { get; init; } = 3;

    [Description("Requests (answered ones) a destination needs in an interval to be judged. Default 100.")]
    public int MinRequests { get; init; } = 100;

    [Description("Destinations with minRequests the cluster needs before the rule runs at all. Default 3.")]
    public int MinDestinations { get; init; } = 3;

    [Description("A p90 below this is never an outlier, however far from the median (1 ms against 4 ms is noise). Default 100ms.")]
    public TimeSpan MinLatency { get; init; } = TimeSpan.FromMilliseconds(100);
}
