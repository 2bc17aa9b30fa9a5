"""The dashboard's revenue tiles say net first, gross and refunds beneath, and the change in net against the
period just before, in words."""

from __future__ import annotations

from test_admin import Console, console, paid_order  # noqa: F401 (the console fixture)

from billing.reports import sales_tile


def test_a_tile_is_net_with_gross_and_refunds_beneath_and_the_change_in_words() -> None:
    tile = sales_tile(39600, 12900, 19800, 0)
    assert (tile["net_fen"], tile["paid_fen"], tile["refunded_fen"]) == (26700, 39600, 12900)
    assert tile["trend"] == "up" and tile["change"] == ("比上期 +35%（上期 ¥198.00）", "+35% on the period before (¥198.00)")
    assert sales_tile(9900, 0, 19800, 0)["change"][1] == "−50% on the period before (¥198.00)"
    assert sales_tile(9900, 0, 9900, 0)["trend"] == "flat"
    assert sales_tile(9900, 0, 0, 0)["change"] == ("上期净收入 ¥0.00", "¥0.00 net the period before")
    assert sales_tile(0, 0, 0, 0)["change"][1] == "same as the period before"
    assert sales_tile(100, 0, 3, 0)["change"][1] == "+3233% on the period before (¥0.03)"  # 97/3, half up


def test_the_dashboard_shows_the_same_net_in_its_tiles_and_its_chart(console: Console) -> None:
    paid_order(console.shop)
    page = console.page("/admin/")
    assert page.count('class="big net">¥99.00<') == 3  # today, 7 days, 30 days: all net
    assert "收款 <span lang=\"en\">gross</span> ¥99.00 · 退款 <span lang=\"en\">refunds</span> ¥0.00" in page
    assert 'data-fen="9900"' in page  # the chart's bar for today: net as well
    assert "上期净收入 ¥0.00" in page
