"""HTML for visitors, in their language: one Jinja environment per language, compiled once."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from .i18n import LANG_COOKIE, Formatter, language_name, load_catalogs, negotiate

LANG_COOKIE_SECONDS = 365 * 24 * 3600
# The gateway's own pages load nothing from anywhere else, run no inline script, and are
# never framed: a crowd of anxious visitors is a tempting target for clickjacking.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class Pages:
    def __init__(self, templates_dir: Path) -> None:
        self.catalogs = load_catalogs(templates_dir / "locale")
        self.languages = sorted(self.catalogs, key=lambda lang: (lang != "en", lang))
        self.names = {lang: language_name(lang) for lang in self.languages}
        self._envs: dict[str, jinja2.Environment] = {}
        self._formatters: dict[str, Formatter] = {}
        self._negotiated = functools.lru_cache(maxsize=1024)(self._negotiate)
        for lang, translations in self.catalogs.items():
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(str(templates_dir)),
                autoescape=jinja2.select_autoescape(["html"]),
                extensions=["jinja2.ext.i18n"],
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
            fmt = Formatter(lang, translations.ngettext)
            env.globals.update(fmt=fmt, lang=lang, languages=self.names)
            self._envs[lang] = env
            self._formatters[lang] = fmt

    def language(self, request: Request) -> str:
        return self.language_for(
            request.cookies.get(LANG_COOKIE), request.headers.get("accept-language", "")
        )

    def language_for(self, cookie: str | None, accept: str) -> str:
        """The language for a lang cookie and an Accept-Language header. A crowd sends few
        distinct pairs, so each is negotiated once."""
        return self._negotiated(cookie, accept[:200])

    def _negotiate(self, cookie: str | None, accept: str) -> str:
        return negotiate(self.catalogs, cookie, accept)

    def formatter(self, lang: str) -> Formatter:
        return self._formatters[lang]

    def translate(self, lang: str, message: str) -> str:
        return str(self.catalogs[lang].gettext(message))

    def render_string(self, lang: str, template: str, context: Mapping[str, Any]) -> str:
        return self._envs[lang].get_template(template).render(context)

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        lang: str | None = None,
    ) -> HTMLResponse:
        lang = lang or self.language(request)
        body = self.render_string(
            lang, template, {"request": request, "path": request.url.path, **context}
        )
        return HTMLResponse(
            body, status_code=status_code, headers=SECURITY_HEADERS | dict(headers or {})
        )
